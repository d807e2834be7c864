package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
)

// Task is a long-running container whose output the test reads while it
// runs. Its methods are safe for concurrent use.
type Task struct {
	// ID is the container id.
	ID string

	c      containerd.Container
	task   containerd.Task
	stdout syncBuffer
	stderr syncBuffer

	done   chan struct{} // closed when the process has exited
	status containerd.ExitStatus

	once sync.Once
	err  error
}

// StartTask starts args in a new container from img with its output
// captured, and returns without waiting for it to exit. Stop ends it;
// Close removes it if the test does not.
func (e *Env) StartTask(ctx context.Context, img containerd.Image, o RunOptions, args ...string) (*Task, error) {
	c, err := e.newContainer(ctx, img, o, args)
	if err != nil {
		return nil, err
	}
	t := &Task{ID: c.ID(), c: c, done: make(chan struct{})}
	fail := func(err error) (*Task, error) {
		c.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup)
		return nil, err
	}
	fifos := filepath.Join(e.Dir, "fifo")
	if err := os.MkdirAll(fifos, 0o700); err != nil {
		return fail(err)
	}
	t.task, err = c.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &t.stdout, &t.stderr), cio.WithFIFODir(fifos)))
	if err != nil {
		return fail(fmt.Errorf("create task: %w", err))
	}
	// The wait channel must exist before the task starts, or a quick exit
	// is missed. It lives as long as the task, not the caller's ctx.
	exit, err := t.task.Wait(context.WithoutCancel(ctx))
	if err != nil {
		t.task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return fail(err)
	}
	go func() {
		t.status = <-exit
		close(t.done)
	}()
	if err := t.task.Start(ctx); err != nil {
		t.task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return fail(fmt.Errorf("start task: %w", err))
	}
	return t, nil
}

// Stdout returns the task's standard output so far.
func (t *Task) Stdout() string { return t.stdout.String() }

// LongestSilence returns the longest time between two writes of the
// task to its standard output so far: for a task that prints at a steady
// pace, its interval plus the longest pause it suffered.
func (t *Task) LongestSilence() time.Duration {
	t.stdout.mu.Lock()
	defer t.stdout.mu.Unlock()
	return t.stdout.longest
}

// Stderr returns the task's standard error so far.
func (t *Task) Stderr() string { return t.stderr.String() }

// Exited reports whether the task's process has ended.
func (t *Task) Exited() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// Stop kills the task (SIGKILL) unless it has exited, waits for it up to
// timeout, deletes the task and then the container with its snapshot. It
// returns the exit code. Safe to call twice; later calls return the first
// result.
func (t *Task) Stop(ctx context.Context, timeout time.Duration) (uint32, error) {
	t.once.Do(func() {
		ctx := context.WithoutCancel(ctx)
		var errs []error
		if err := t.task.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("kill task: %w", err))
		}
		select {
		case <-t.done:
			if err := drainOutput(ctx, t.task.IO(), timeout); err != nil {
				errs = append(errs, fmt.Errorf("task %s: %w", t.ID, err))
			}
		case <-time.After(timeout):
			errs = append(errs, fmt.Errorf("task %s did not exit within %s of SIGKILL", t.ID, timeout))
		}
		if _, err := t.task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete task: %w", err))
		}
		if err := t.c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete container: %w", err))
		}
		t.err = errors.Join(errs...)
	})
	if !t.Exited() {
		return 0, t.err
	}
	code, _, _ := t.status.Result()
	return code, t.err
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// last is when the last write came, longest the longest time between
	// two writes.
	last    time.Time
	longest time.Duration
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if !b.last.IsZero() {
		b.longest = max(b.longest, now.Sub(b.last))
	}
	b.last = now
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
