package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// fuseServerStart bounds how long the daemon waits for a server it spawned.
const fuseServerStart = 15 * time.Second

// newSeparateBackend connects to the FUSE server on its socket, starting it
// (detached, in its own session, so that it outlives this daemon) if nobody
// serves the socket and no server process of this root is alive. A server
// that is alive but does not answer (stopped, stuck) is logged and left
// alone: it still holds the mounts of running containers, and a second
// server could not take its socket anyway. Layer calls then fail with
// ErrUnavailable until it answers again.
func newSeparateBackend(ctx context.Context, cfg config, f flags, repo *ducc.Repo) (backend, error) {
	sock := fuseServerSocket(cfg, f)
	root, err := filepath.Abs(f.root)
	if err != nil {
		return backend{}, err
	}
	lookup := time.Duration(cfg.LookupTimeout)
	c := fuseremote.NewClient(sock, fuseremote.WithTimeouts(lookup, min(lookup, fuseremote.DefaultCallTimeout)))
	rc := &respawningClient{Client: c, sock: sock, root: root, respawn: func(ctx context.Context) error {
		return startFUSEServer(ctx, c, sock, f)
	}}
	switch err := c.Ping(ctx); {
	case err == nil:
		log.G(ctx).WithField("socket", sock).Info("re-attached to the running FUSE server")
	case ctx.Err() != nil:
		return backend{}, fmt.Errorf("stopped while connecting to the FUSE server at %s: %w", sock, ctx.Err())
	default:
		if err := rc.revive(ctx, err); err != nil {
			if !errors.Is(err, errdefs.ErrUnavailable) {
				return backend{}, err
			}
			log.G(ctx).WithError(err).WithField("socket", sock).
				Error("the FUSE server does not answer and was not replaced; remote layers are unavailable until it answers")
		}
	}
	return backend{
		layers:     sizedLayerFS{LayerFS: rc, repo: repo},
		stats:      c,
		close:      func(context.Context) error { return nil },
		keepMounts: true,
	}, nil
}

// startFUSEServer spawns the server and waits until it answers, it exits,
// or ctx ends.
func startFUSEServer(ctx context.Context, c *fuseremote.Client, sock string, f flags) error {
	exited, err := spawnFUSEServer(ctx, sock, f)
	if err != nil {
		return err
	}
	deadline := time.NewTimer(fuseServerStart)
	defer deadline.Stop()
	for c.Ping(ctx) != nil {
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped while waiting for the FUSE server at %s: %w", sock, ctx.Err())
		case werr := <-exited:
			return fmt.Errorf("fuse server exited at start (%v); see %s", werr, fuseServerLog(f))
		case <-deadline.C:
			return fmt.Errorf("fuse server did not answer on %s within %v (see %s): %w", sock, fuseServerStart, fuseServerLog(f), errdefs.ErrUnavailable)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// respawningClient starts the FUSE server again when a Mount or Unmount
// finds it gone (killed, crashed), then retries once. Check does not: a
// dead server means dead mounts, which the snapshotter revives through
// Unmount and Mount. A server that is alive but does not answer is never
// replaced: the call fails with ErrUnavailable.
type respawningClient struct {
	*fuseremote.Client
	sock, root string
	respawn    func(context.Context) error

	mu sync.Mutex // serialises revivals
}

func (r *respawningClient) retry(ctx context.Context, call func() error) error {
	err := call()
	if !errors.Is(err, fuseremote.ErrServerDown) {
		return err
	}
	r.mu.Lock()
	rerr := r.revive(ctx, r.Client.Ping(ctx))
	r.mu.Unlock()
	if rerr != nil {
		return fmt.Errorf("%w (restart: %v)", err, rerr)
	}
	return call()
}

// revive starts the server again if pingErr (the result of a ping) says
// nobody serves the socket and no server process of this root is alive.
// It returns nil if the server answers (again), and an error wrapping
// errdefs.ErrUnavailable if it is alive but does not answer.
func (r *respawningClient) revive(ctx context.Context, pingErr error) error {
	switch {
	case pingErr == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case !errors.Is(pingErr, fuseremote.ErrServerDown):
		// It holds its socket but does not answer (logged by the client).
		return pingErr
	}
	if pid, alive := fuseServerAlive(r.root); alive {
		return fmt.Errorf("fuse server (pid %d) is alive but does not serve %s: %w", pid, r.sock, errdefs.ErrUnavailable)
	}
	log.G(ctx).WithError(pingErr).WithField("socket", r.sock).Warn("the FUSE server is gone; starting it again")
	return r.respawn(ctx)
}

func (r *respawningClient) Mount(ctx context.Context, mountpoint string, layer digest.Digest) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	return r.retry(ctx, func() error { return r.Client.Mount(ctx, mp, layer) })
}

func (r *respawningClient) Check(ctx context.Context, mountpoint string) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	return r.Client.Check(ctx, mp)
}

// Unmount asks the server to unmount mountpoint. The server refuses mounts
// it does not hold (ErrNotOwned): those are left by a previous server, dead
// since, and the daemon clears them itself (plainly, then lazily; never
// MNT_FORCE) so that the layer can be mounted again.
func (r *respawningClient) Unmount(ctx context.Context, mountpoint string) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	err = r.retry(ctx, func() error { return r.Client.Unmount(ctx, mp) })
	if !errors.Is(err, fuseremote.ErrNotOwned) {
		return err
	}
	if err := mountutil.Unmount(mp); err != nil {
		return fmt.Errorf("failed to unmount %q, left by an earlier FUSE server: %w", mp, err)
	}
	return nil
}

// fuseServerSocket returns the configured socket, made absolute.
func fuseServerSocket(cfg config, f flags) string {
	sock := cfg.FUSEServerSocket
	if sock == "" {
		sock = filepath.Join(f.root, "fuse-server.sock")
	}
	if abs, err := filepath.Abs(sock); err == nil {
		sock = abs
	}
	return sock
}

func fuseServerLog(f flags) string { return filepath.Join(f.root, "fuse-server.log") }

// spawnFUSEServer starts the server; the returned channel gets its exit
// status when it exits while this daemon runs.
func spawnFUSEServer(ctx context.Context, sock string, f flags) (<-chan error, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(fuseServerLog(f), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	root, err := filepath.Abs(f.root)
	if err != nil {
		return nil, err
	}
	args := []string{"fuse-server", "--socket", sock, "--root", root, "--log-level", f.logLevel}
	if f.config != "" {
		args = append(args, "--config", f.config)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: signals to the daemon's process group (a terminal's
	// ^C, a service manager stopping the daemon) do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start fuse server: %w", err)
	}
	log.G(ctx).WithField("pid", cmd.Process.Pid).WithField("socket", sock).Info("started the FUSE server")
	// Reap it if it exits while we run; after we exit, init does.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return exited, nil
}

// runFUSEServer is "cvmfs-snapshotter fuse-server": it serves FUSE layer
// mounts for daemons that connect on its socket, until SIGTERM/SIGINT or a
// shutdown call, then unmounts them all.
func runFUSEServer(ctx context.Context, args []string, out io.Writer) error {
	var sock, root, cfgPath, level string
	fs := flag.NewFlagSet("cvmfs-snapshotter fuse-server", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&sock, "socket", "", "unix socket to serve the FUSE API on (created 0600)")
	fs.StringVar(&root, "root", "", "the daemon's --root: only <root>/snapshots/<id>/fs may be mounted")
	fs.StringVar(&cfgPath, "config", "", "path to the daemon's TOML configuration file")
	fs.StringVar(&level, "log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sock == "" || root == "" {
		return errors.New("fuse-server: --socket and --root are required")
	}
	if err := log.SetLevel(level); err != nil {
		return err
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("snapshotter", "cvmfs-fuse-server"))
	m, err := newManager(cfg, ducc.New(cfg.AbsoluteMountpoint), fusefs.WithStateDir(layerStateDir(root)))
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	srv, err := fuseremote.NewServer(m, root, fuseremote.WithStop(stop))
	if err != nil {
		return err
	}
	l, err := listen(sock)
	if err != nil {
		return err
	}
	// Removed last, once every mount is gone: until then a daemon that
	// cannot reach the socket knows not to start another server.
	pidFile := fuseServerPIDFile(root)
	if err := writePIDFile(pidFile); err != nil {
		l.Close()
		return err
	}
	defer removePIDFile(pidFile)
	go func() {
		if err := srv.Serve(ctx, l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("fuse server stopped serving")
			stop()
		}
	}()
	log.G(ctx).WithField("socket", sock).Info("FUSE server serving")
	<-ctx.Done()
	log.G(ctx).Info("FUSE server stopping: unmounting every layer")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return m.Close(sctx)
}

// fuseServerPIDFile is where the FUSE server of root records its pid.
func fuseServerPIDFile(root string) string { return filepath.Join(root, "fuse-server.pid") }

// writePIDFile records this process's pid at path, atomically.
func writePIDFile(path string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// removePIDFile removes path if it still holds this process's pid.
func removePIDFile(path string) {
	if pid, err := readPIDFile(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// fuseServerAlive returns the pid recorded by the FUSE server of root, and
// whether that process still exists (running, stopped or stuck; not a
// zombie) and is a fuse-server of this root, not an unrelated process that
// reused the pid.
func fuseServerAlive(root string) (int, bool) {
	pid, err := readPIDFile(fuseServerPIDFile(root))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return pid, false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	return pid, len(args) > 1 && args[1] == "fuse-server" && slices.Contains(args, root)
}
