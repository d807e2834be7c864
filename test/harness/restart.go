package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// StopKind is how StopSnapshotter ends the daemon.
type StopKind int

const (
	// Graceful sends SIGTERM and waits: the daemon finishes in-flight
	// requests and leaves its FUSE mounts to its custody (bind mounts
	// stay as they are).
	Graceful StopKind = iota
	// Kill sends SIGKILL: the socket file stays behind; FUSE mounts wait,
	// kept by the custody, for the next daemon.
	Kill
)

// KillCustody kills (SIGKILL) the custody process of the daemon and waits
// until the running daemon has started another: at most 10 s.
func (e *Env) KillCustody() error {
	root := filepath.Join(e.Dir, "snapshotter")
	old := testutil.Custodies(root)
	if len(old) != 1 {
		return fmt.Errorf("custody processes under %s: %v, want 1", root, old)
	}
	const restarted = "custody of FUSE connections restarted"
	before := strings.Count(e.SnapshotterLog(), restarted)
	if err := unix.Kill(old[0], unix.SIGKILL); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if now := testutil.Custodies(root); len(now) == 1 && now[0] != old[0] &&
			strings.Count(e.SnapshotterLog(), restarted) > before {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no custody started again within 10s of killing %d", old[0])
}

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

// killedExitTimeout bounds the wait for a killed daemon to be gone. Past
// it the daemon is stuck in the kernel (see ErrStuck).
const killedExitTimeout = 10 * time.Second

// ErrStuck is wrapped by StopSnapshotter's error when the daemon did not
// exit within 10 s of SIGKILL: a thread of it waits, uninterruptibly, for
// an answer from a FUSE mount that the same process served. That server
// died with the signal, and the connection only ends when the process's
// last thread exits: a deadlock the kernel does not break. StopSnapshotter
// then aborts the stuck connections (/sys/fs/fuse/connections/N/abort) so
// that the process can exit, and reports what was stuck.
var ErrStuck = errors.New("the daemon did not exit after SIGKILL")

// StopSnapshotter stops the daemon. Graceful returns an error if it does
// not exit within 20 s of SIGTERM (it is then killed) or exits with an
// error; Kill sends SIGKILL. Either returns an error wrapping ErrStuck if
// the process outlives SIGKILL by 10 s (it is then freed, see ErrStuck).
// Stopping a stopped daemon does nothing. Restarts are not safe for
// concurrent use with each other or with Close.
func (e *Env) StopSnapshotter(kind StopKind) error {
	e.mu.Lock()
	p := e.snap
	e.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	var errs []error
	if kind == Graceful {
		if exited, err := p.terminate(snapshotterStopGrace); exited {
			return err
		}
		errs = append(errs, fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.name, snapshotterStopGrace))
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return errors.Join(errs...)
	case <-time.After(killedExitTimeout):
	}
	stuck := stuckThreads(p.cmd.Process.Pid)
	aborted, err := e.abortWaitingFUSE()
	errs = append(errs, err)
	select {
	case <-p.done:
	case <-time.After(killedExitTimeout):
		errs = append(errs, errors.New("still not gone after aborting its FUSE connections"))
	}
	return fmt.Errorf("%w (pid %d; stuck threads: %s; aborted FUSE connections: %s): %w",
		ErrStuck, p.cmd.Process.Pid, stuck, aborted, errors.Join(errs...))
}

// stuckThreads describes the threads of pid in uninterruptible sleep: the
// top kernel frames of each.
func stuckThreads(pid int) string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	var out []string
	for _, task := range tasks {
		stat, err := os.ReadFile(filepath.Join(task, "stat"))
		if err != nil {
			continue
		}
		// The state follows the parenthesised command name.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 || i+2 >= len(stat) || stat[i+2] != 'D' {
			continue
		}
		stack, _ := os.ReadFile(filepath.Join(task, "stack"))
		var frames []string
		for _, l := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
			if f := strings.Fields(l); len(f) > 1 && len(frames) < 4 {
				frames = append(frames, f[len(f)-1])
			}
		}
		out = append(out, filepath.Base(task)+" in "+strings.Join(frames, "<"))
	}
	if len(out) == 0 {
		return "none found"
	}
	return strings.Join(out, "; ")
}

// fusectl is where the FUSE control filesystem is normally mounted.
const fusectl = "/sys/fs/fuse/connections"

// abortWaitingFUSE aborts the connection of every FUSE mount under e.Dir
// that has requests waiting for an answer, mounting the FUSE control
// filesystem first if needed. It returns the mountpoints aborted.
func (e *Env) abortWaitingFUSE() (string, error) {
	if _, err := os.Stat(filepath.Join(fusectl, "..")); err == nil {
		if ok, _ := mountinfo.Mounted(fusectl); !ok {
			if err := unix.Mount("none", fusectl, "fusectl", 0, ""); err != nil {
				return "", fmt.Errorf("mount fusectl: %w", err)
			}
		}
	}
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(e.Dir))
	if err != nil {
		return "", err
	}
	var aborted []string
	var errs []error
	for _, m := range ms {
		if !strings.HasPrefix(m.FSType, "fuse") {
			continue
		}
		conn := filepath.Join(fusectl, strconv.Itoa(m.Minor))
		if m.Major != 0 {
			continue // not an anonymous device: not ours
		}
		waiting, err := os.ReadFile(filepath.Join(conn, "waiting"))
		if err != nil || strings.TrimSpace(string(waiting)) == "0" {
			continue
		}
		if err := os.WriteFile(filepath.Join(conn, "abort"), []byte("1"), 0o200); err != nil {
			errs = append(errs, fmt.Errorf("abort %s: %w", conn, err))
			continue
		}
		aborted = append(aborted, fmt.Sprintf("%s (%s waiting)", m.Mountpoint, strings.TrimSpace(string(waiting))))
	}
	if len(aborted) == 0 {
		return "none", errors.Join(errs...)
	}
	return strings.Join(aborted, ", "), errors.Join(errs...)
}

// StartSnapshotter starts the daemon again after StopSnapshotter, with
// the same configuration file, root, socket and log (appended to), and
// waits until the socket accepts connections. A killed daemon leaves its
// socket file behind, so readiness is a successful dial, never the file's
// existence. It returns an error if a daemon is already running, or if
// the new one exits or does not listen within 30 s.
func (e *Env) StartSnapshotter(ctx context.Context) error {
	bin, err := Binary("cvmfs-snapshotter")
	if err != nil {
		return err
	}
	return e.StartSnapshotterBinary(ctx, bin)
}

// StartSnapshotterBinary is StartSnapshotter with the daemon's executable
// bin (another build, for an upgrade).
func (e *Env) StartSnapshotterBinary(ctx context.Context, bin string) error {
	e.mu.Lock()
	closed, old := e.closed, e.snap
	e.mu.Unlock()
	if closed {
		return errors.New("environment is closed")
	}
	if old != nil && !old.exited() {
		return errors.New("the snapshotter is still running")
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

// Reconfigure stops the daemon gracefully, rewrites its configuration for
// o and starts it again (see StartSnapshotter). Only the daemon's keys
// (MountMode, Accounting, Metrics) and CVMFSMissDelay may change: it returns an error if o asks
// for another containerd, CRI or FUSE server setting. Remote snapshots the
// daemon holds are restored by the new daemon, mounted the new way. Not
// safe for concurrent use with other restarts or with Close.
func (e *Env) Reconfigure(ctx context.Context, o Options) error {
	old := e.Options
	if o.Containerd != old.Containerd || o.CRI != old.CRI || o.SeparateFUSEServer != old.SeparateFUSEServer ||
		o.CVMFSLike != old.CVMFSLike || o.CVMFSClaimOwnership != old.CVMFSClaimOwnership {
		return errors.New("Reconfigure changes only the daemon's mount-mode, accounting, metrics and prefetch, and the store's miss delay")
	}
	if e.Store != nil {
		e.Store.SetMissDelay(o.CVMFSMissDelay)
	}
	if err := e.StopSnapshotter(Graceful); err != nil {
		return err
	}
	_, metrics, err := writeSnapshotterConfig(e.Dir, e.RepoDir, o)
	if err != nil {
		return err
	}
	e.Options, e.MetricsAddr = o, metrics
	return e.StartSnapshotter(ctx)
}
