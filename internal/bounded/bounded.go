package bounded

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
)

// Call runs fn in its own goroutine and returns its result, or, if ctx ends
// first, an error naming what and wrapping both ctx.Err() and
// errdefs.ErrUnavailable. An abandoned fn runs to its end (a blocked
// syscall cannot be called back); a non-nil io.Closer it returns then is
// closed, so that nothing it opened leaks.
func Call[T any](ctx context.Context, what string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1) // buffered: an abandoned fn must not block
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	select {
	case res := <-ch:
		return res.v, res.err
	case <-ctx.Done():
		go func() {
			if c, ok := any((<-ch).v).(io.Closer); ok && c != nil {
				c.Close()
			}
		}()
		var zero T
		return zero, fmt.Errorf("%s: %w: %w", what, ctx.Err(), errdefs.ErrUnavailable)
	}
}

// Do is Call for a function that returns only an error.
func Do(ctx context.Context, what string, fn func() error) error {
	_, err := Call(ctx, what, func() (struct{}, error) { return struct{}{}, fn() })
	return err
}
