package snapshot

import (
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// TestLookupTimeoutMustBePositive: a zero or negative lookup timeout is
// refused, never silently replaced by the default.
func TestLookupTimeoutMustBePositive(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if err := ValidateOpts(WithLookupTimeout(d)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("WithLookupTimeout(%v) = %v, want ErrInvalidArgument", d, err)
		}
	}
	if err := ValidateOpts(WithLookupTimeout(time.Millisecond)); err != nil {
		t.Errorf("WithLookupTimeout(1ms) = %v", err)
	}
}
