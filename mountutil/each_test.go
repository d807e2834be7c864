package mountutil

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// TestUnmountEach: every mountpoint is unmounted at once (each call waits
// until all have started, which would deadlock one at a time) and every
// error is returned.
func TestUnmountEach(t *testing.T) {
	mps := []string{"/a", "/b", "/c", "/d"}
	var all sync.WaitGroup
	all.Add(len(mps))
	err := UnmountEach(context.Background(), mps, func(ctx context.Context, mp string) error {
		all.Done()
		all.Wait()
		if mp == "/b" || mp == "/d" {
			return fmt.Errorf("unmount %s: busy", mp)
		}
		return nil
	})
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) || len(joined.Unwrap()) != 2 {
		t.Fatalf("UnmountEach = %v, want the two errors", err)
	}
	if err := UnmountEach(context.Background(), nil, nil); err != nil {
		t.Fatalf("UnmountEach of nothing = %v", err)
	}
}
