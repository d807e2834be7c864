package bounded

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

type closer struct{ closed chan struct{} }

func (c *closer) Close() error { close(c.closed); return nil }

func TestCallReturnsResult(t *testing.T) {
	want := errors.New("fn failed")
	v, err := Call(context.Background(), "x", func() (int, error) { return 7, want })
	if v != 7 || err != want {
		t.Fatalf("Call = %d, %v; want 7, %v", v, err, want)
	}
	if err := Do(context.Background(), "x", func() error { return nil }); err != nil {
		t.Fatalf("Do = %v", err)
	}
}

// TestCallAbandoned: a call still blocked when ctx ends returns at once
// with ErrUnavailable and ctx's error; what it returns later is closed.
func TestCallAbandoned(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	started := make(chan struct{})
	c := &closer{closed: make(chan struct{})}
	go func() { <-started; cancel() }()
	v, err := Call(ctx, "stat /stuck", func() (*closer, error) {
		close(started)
		<-release
		return c, nil
	})
	if v != nil || !errdefs.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Call = %v, %v; want nil and ErrUnavailable wrapping context.Canceled", v, err)
	}
	close(release)
	<-c.closed // hangs (and the test times out) if the late result leaks
	if err := Do(ctx, "x", func() error { return nil }); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after cancel = %v", err)
	}
}
