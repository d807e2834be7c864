//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// mute returns a socket on which connections are accepted (accept=true) or
// only queued, and never answered: a stopped or stuck server.
func mute(t *testing.T, accept bool) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if accept {
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
	}
	return sock
}

// TestClientDeadlines: every call to a server that does not answer returns
// ErrUnavailable and ErrNoAnswer (never ErrServerDown: the server is alive)
// within its deadline.
func TestClientDeadlines(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ctx := context.Background()
	for _, accept := range []bool{true, false} {
		c := NewClient(mute(t, accept), WithTimeouts(timeout, timeout))
		calls := map[string]func() error{
			"Ping":     func() error { return c.Ping(ctx) },
			"Mount":    func() error { return c.Mount(ctx, "/r/snapshots/1/fs", digest.FromString("l")) },
			"Check":    func() error { return c.Check(ctx, "/r/snapshots/1/fs") },
			"Unmount":  func() error { return c.Unmount(ctx, "/r/snapshots/1/fs") },
			"Shutdown": func() error { return c.Shutdown(ctx) },
			"Stats": func() error {
				if st, err := c.Stats(); err == nil || st != nil {
					return errors.New("stats from nowhere")
				}
				return ErrNoAnswer
			},
		}
		for name, call := range calls {
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- call() }()
			select {
			case err := <-done:
				if name != "Stats" && (!errdefs.IsUnavailable(err) || !errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrServerDown)) {
					t.Errorf("%s (accept=%v) = %v, want ErrUnavailable and ErrNoAnswer, not ErrServerDown", name, accept, err)
				}
				if took := time.Since(start); took > timeout+2*time.Second {
					t.Errorf("%s (accept=%v) took %v, deadline %v", name, accept, took, timeout)
				}
			case <-time.After(timeout + 10*time.Second):
				t.Fatalf("%s (accept=%v) hangs on a server that does not answer", name, accept)
			}
		}
	}
}

// TestClientDefaultDeadline: without options or a caller deadline, a call
// still ends, within DefaultCallTimeout.
func TestClientDefaultDeadline(t *testing.T) {
	c := NewClient(mute(t, true))
	done := make(chan error, 1)
	go func() { done <- c.Ping(context.Background()) }()
	select {
	case err := <-done:
		if !errdefs.IsUnavailable(err) || errors.Is(err, ErrServerDown) {
			t.Fatalf("Ping = %v, want ErrUnavailable, not ErrServerDown", err)
		}
	case <-time.After(DefaultCallTimeout + 10*time.Second):
		t.Fatal("Ping hangs on a server that does not answer")
	}
}

// TestClientCallerDeadline: the caller's deadline, shorter than the
// client's, ends the call; that is not the server's fault (no ErrNoAnswer).
func TestClientCallerDeadline(t *testing.T) {
	c := NewClient(mute(t, true), WithTimeouts(time.Minute, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Check(ctx, "/r/snapshots/1/fs")
	if !errdefs.IsUnavailable(err) || errors.Is(err, ErrNoAnswer) || errors.Is(err, ErrServerDown) {
		t.Fatalf("Check past the caller's deadline = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Check took %v past a 200ms caller deadline", took)
	}
}
