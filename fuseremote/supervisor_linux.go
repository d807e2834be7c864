//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/detached"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// DefaultStartTimeout bounds how long a Supervisor waits for a server it
// started to answer.
const DefaultStartTimeout = 15 * time.Second

// SupervisorOpt configures a Supervisor.
type SupervisorOpt func(*Supervisor) error

// WithClientOptions configures the Supervisor's Client (its deadlines).
func WithClientOptions(opts ...ClientOpt) SupervisorOpt {
	return func(s *Supervisor) error {
		s.clientOpts = append(s.clientOpts, opts...)
		return nil
	}
}

// Supervisor is the daemon's side of a separate FUSE server: a Client of
// the server on its socket that also keeps the server running. It starts
// the server (detached, in its own session, so that it outlives the
// daemon) when nobody serves the socket and no server process of the root
// is alive, and starts it again when a Mount or Unmount finds it gone
// (killed, crashed), then retries once. Check does not: a dead server
// means dead mounts, which the snapshotter revives through Unmount and
// Mount. A server that is alive but does not answer (stopped, stuck) is
// never replaced, since it still holds the mounts of running containers:
// calls fail with errdefs.ErrUnavailable until it answers again.
//
// It satisfies the snapshot package's LayerFS (structurally) and, through
// its Client, the metrics package's Source. It is safe for concurrent use.
type Supervisor struct {
	*Client
	root, socket string
	command      []string
	logPath      string
	startTimeout time.Duration
	clientOpts   []ClientOpt
	// spawn starts the server and returns a channel that gets its exit
	// status; tests replace it.
	spawn func(ctx context.Context) (<-chan error, error)

	mu sync.Mutex // serialises revivals
}

// NewSupervisor returns a supervisor of the FUSE server of the daemon
// whose root directory is root, serving on socket. command is the server's
// command line: an executable and its arguments, of which the first names
// the server (a subcommand). A process recorded in PIDFile(root) is taken
// for a live server of this root when its second word is that name and
// root is one of its words, so that a pid reused by another process never
// stops a server from being started. Relative paths are made absolute. It
// starts nothing: see Start.
func NewSupervisor(root, socket string, command []string, opts ...SupervisorOpt) (*Supervisor, error) {
	if len(command) < 2 {
		return nil, fmt.Errorf("fuse server command %q: want an executable and a name: %w", command, errdefs.ErrInvalidArgument)
	}
	var err error
	if root, err = filepath.Abs(root); err != nil {
		return nil, err
	}
	if socket, err = filepath.Abs(socket); err != nil {
		return nil, err
	}
	s := &Supervisor{
		root:         root,
		socket:       socket,
		command:      slices.Clone(command),
		logPath:      filepath.Join(root, "fuse-server.log"),
		startTimeout: DefaultStartTimeout,
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.Client = NewClient(socket, s.clientOpts...)
	s.spawn = s.spawnServer
	return s, nil
}

// Start re-attaches to the server if it answers, and starts it if nobody
// serves the socket and no server process of the root is alive. A server
// log grown past 16 MiB is cut first (its tail kept in a .1 file). A server
// that is alive but does not answer is left alone: Start returns an error
// wrapping errdefs.ErrUnavailable, and the supervisor is usable all the
// same (its calls fail until the server answers again).
func (s *Supervisor) Start(ctx context.Context) error {
	if err := boundLog(s.logPath); err != nil {
		log.G(ctx).WithError(err).WithField("path", s.logPath).Warn("failed to bound the FUSE server log")
	}
	switch err := s.Ping(ctx); {
	case err == nil:
		log.G(ctx).WithField("socket", s.socket).Info("re-attached to the running FUSE server")
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("stopped while connecting to the FUSE server at %s: %w", s.socket, ctx.Err())
	default:
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.revive(ctx, err, true)
	}
}

// Mount asks the server to mount layer at mountpoint, starting the server
// again (once) if it is gone.
func (s *Supervisor) Mount(ctx context.Context, mountpoint string, layer digest.Digest) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	return s.retry(ctx, func() error { return s.Client.Mount(ctx, mp, layer) })
}

// Check asks the server whether the mount at mountpoint is alive.
func (s *Supervisor) Check(ctx context.Context, mountpoint string) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	return s.Client.Check(ctx, mp)
}

// Unmount asks the server to unmount mountpoint, starting the server again
// (once) if it is gone. The server refuses mounts it does not hold
// (ErrNotOwned): those are left by a previous server, dead since, and the
// supervisor clears them itself (plainly, then lazily; never MNT_FORCE) so
// that the layer can be mounted again.
func (s *Supervisor) Unmount(ctx context.Context, mountpoint string) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	err = s.retry(ctx, func() error { return s.Client.Unmount(ctx, mp) })
	if !errors.Is(err, ErrNotOwned) {
		return err
	}
	if err := mountutil.Unmount(mp); err != nil {
		return fmt.Errorf("failed to unmount %q, left by an earlier FUSE server: %w", mp, err)
	}
	return nil
}

// retry runs call, and once more after starting the server again if call
// found it gone.
func (s *Supervisor) retry(ctx context.Context, call func() error) error {
	err := call()
	if !errors.Is(err, ErrServerDown) {
		return err
	}
	s.mu.Lock()
	rerr := s.revive(ctx, s.Ping(ctx), false)
	s.mu.Unlock()
	if rerr != nil {
		return fmt.Errorf("%w (restart: %v)", err, rerr)
	}
	return call()
}

// revive starts the server if pingErr (the result of a ping) says nobody
// serves the socket and no server process of the root is alive. It returns
// nil if the server answers (again), and an error wrapping
// errdefs.ErrUnavailable if it is alive but does not answer. atStart says
// the daemon is starting: a root with no server recorded then simply gets
// its first one, which is not worth a warning. s.mu is held.
func (s *Supervisor) revive(ctx context.Context, pingErr error, atStart bool) error {
	switch {
	case pingErr == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case !errors.Is(pingErr, ErrServerDown):
		// It holds its socket but does not answer (logged by the client).
		return pingErr
	}
	pid, alive := s.serverAlive()
	if alive {
		return fmt.Errorf("fuse server (pid %d) is alive but does not serve %s: %w", pid, s.socket, errdefs.ErrUnavailable)
	}
	if atStart && pid == 0 {
		// No record: a first start, or the last server exited cleanly.
		log.G(ctx).WithField("socket", s.socket).Info("no FUSE server runs for this root; starting one")
	} else {
		// A call found it down, or it died without removing its record.
		log.G(ctx).WithError(pingErr).WithField("socket", s.socket).Warn("the FUSE server is gone; starting it")
	}
	return s.startServer(ctx)
}

// startServer spawns the server and waits until it answers, it exits, or
// ctx ends.
func (s *Supervisor) startServer(ctx context.Context) error {
	exited, err := s.spawn(ctx)
	if err != nil {
		return err
	}
	deadline := time.NewTimer(s.startTimeout)
	defer deadline.Stop()
	for s.Ping(ctx) != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for the FUSE server at %s: %w", s.socket, ctx.Err())
		case werr := <-exited:
			return fmt.Errorf("fuse server exited at start (%v); see %s", werr, s.logPath)
		case <-deadline.C:
			return fmt.Errorf("fuse server did not answer on %s within %v (see %s): %w", s.socket, s.startTimeout, s.logPath, errdefs.ErrUnavailable)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// spawnServer starts the server command; the returned channel gets its
// exit status if it exits while this process runs.
func (s *Supervisor) spawnServer(ctx context.Context) (<-chan error, error) {
	pid, exited, err := detached.Start(s.command, s.logPath)
	if err != nil {
		return nil, fmt.Errorf("start fuse server: %w", err)
	}
	log.G(ctx).WithField("pid", pid).WithField("socket", s.socket).Info("started the FUSE server")
	return exited, nil
}

// serverAlive returns the pid recorded by the FUSE server of the root, and
// whether that process still exists (running, stopped or stuck; not a
// zombie) and is a server of this root, not an unrelated process that
// reused the pid. A process runs as this process's user or is not the
// server: any user chooses the command line of its processes, and one who
// got the pid could otherwise keep the server from ever being restarted.
func (s *Supervisor) serverAlive() (int, bool) {
	pid, err := readPIDFile(PIDFile(s.root))
	if err != nil || pid <= 0 {
		return 0, false
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join("/proc", strconv.Itoa(pid)), &st); err != nil || int(st.Uid) != os.Geteuid() {
		return pid, false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return pid, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return pid, len(args) > 1 && args[1] == s.command[1] && slices.Contains(args, s.root)
}
