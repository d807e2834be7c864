package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// StopKind is how StopSnapshotter ends the daemon.
type StopKind int

const (
	// Graceful sends SIGTERM and waits: the daemon finishes in-flight
	// requests and unmounts its layers.
	Graceful StopKind = iota
	// Kill sends SIGKILL: FUSE mounts are left dead (ENOTCONN) and the
	// socket file stays behind.
	Kill
)

func (k StopKind) String() string {
	if k == Kill {
		return "kill"
	}
	return "sigterm"
}

// snapshotterStopGrace bounds a graceful stop; past it the daemon counts
// as hung and is killed.
const snapshotterStopGrace = 20 * time.Second

// snapshotterStartTimeout bounds a restart: restoring remote layers happens
// before the daemon listens.
const snapshotterStartTimeout = 30 * time.Second

// StopSnapshotter stops the daemon. Graceful returns an error if it does
// not exit within 20 s of SIGTERM (it is then killed) or exits with an
// error. Stopping a stopped daemon does nothing. Restarts are not safe for
// concurrent use with each other or with Close.
func (e *Env) StopSnapshotter(kind StopKind) error {
	e.mu.Lock()
	p := e.snap
	e.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	if kind == Graceful {
		return p.stop(snapshotterStopGrace)
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return nil
}

// StartSnapshotter starts the daemon again after StopSnapshotter, with
// the same configuration file, root, socket and log (appended to), and
// waits until the socket accepts connections. A killed daemon leaves its
// socket file behind, so readiness is a successful dial, never the file's
// existence. It returns an error if a daemon is already running, or if
// the new one exits or does not listen within 30 s.
func (e *Env) StartSnapshotter(ctx context.Context) error {
	e.mu.Lock()
	closed, old := e.closed, e.snap
	e.mu.Unlock()
	if closed {
		return errors.New("environment is closed")
	}
	if old != nil && !old.exited() {
		return errors.New("the snapshotter is still running")
	}
	bin, err := Binary("cvmfs-snapshotter")
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(e.Dir, "snapshotter.toml")
	if _, err := os.Stat(cfgPath); err != nil {
		return fmt.Errorf("the daemon's config: %w", err)
	}
	p, err := startProcess("cvmfs-snapshotter", filepath.Join(e.Dir, "snapshotter.log"), os.Environ(),
		bin, "--address", e.SnapshotterSock, "--root", filepath.Join(e.Dir, "snapshotter"),
		"--config", cfgPath, "--log-level", "debug")
	if err != nil {
		return err
	}
	// Set before waiting: Close must stop this one even if it never
	// listens.
	e.mu.Lock()
	e.snap = p
	e.mu.Unlock()
	if err := p.waitSocket(ctx, e.SnapshotterSock, snapshotterStartTimeout); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// RestartSnapshotter stops the daemon (see StopSnapshotter) and starts it
// again (see StartSnapshotter). It returns how long the daemon was
// unavailable: from the stop signal to the first accepted connection.
func (e *Env) RestartSnapshotter(ctx context.Context, kind StopKind) (time.Duration, error) {
	t0 := time.Now()
	stopErr := e.StopSnapshotter(kind)
	if err := e.StartSnapshotter(ctx); err != nil {
		return time.Since(t0), errors.Join(stopErr, err)
	}
	return time.Since(t0), stopErr
}

// SnapshotterPID returns the daemon's process id, or 0 when it is not
// running.
func (e *Env) SnapshotterPID() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.snap == nil || e.snap.exited() {
		return 0
	}
	return e.snap.cmd.Process.Pid
}
