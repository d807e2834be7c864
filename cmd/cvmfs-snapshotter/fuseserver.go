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
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// fuseServerStart bounds how long the daemon waits for a server it spawned.
const fuseServerStart = 15 * time.Second

// newSeparateBackend connects to the FUSE server on its socket, starting it
// (detached, in its own session, so that it outlives this daemon) if none
// answers.
func newSeparateBackend(ctx context.Context, cfg config, f flags, repo *ducc.Repo) (backend, error) {
	sock := fuseServerSocket(cfg, f)
	c := fuseremote.NewClient(sock)
	if err := c.Ping(ctx); err != nil {
		if err := startFUSEServer(ctx, c, sock, f); err != nil {
			return backend{}, err
		}
	} else {
		log.G(ctx).WithField("socket", sock).Info("re-attached to the running FUSE server")
	}
	rc := &respawningClient{Client: c, respawn: func(ctx context.Context) error {
		return startFUSEServer(ctx, c, sock, f)
	}}
	return backend{
		layers:     sizedLayerFS{LayerFS: rc, repo: repo},
		stats:      c,
		close:      func(context.Context) error { return nil },
		keepMounts: true,
	}, nil
}

// startFUSEServer spawns the server and waits until it answers.
func startFUSEServer(ctx context.Context, c *fuseremote.Client, sock string, f flags) error {
	if err := spawnFUSEServer(ctx, sock, f); err != nil {
		return err
	}
	deadline := time.Now().Add(fuseServerStart)
	for c.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			return fmt.Errorf("fuse server did not answer on %s within %v (see %s)", sock, fuseServerStart, fuseServerLog(f))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// respawningClient starts the FUSE server again when a Mount or Unmount
// finds it gone (killed, crashed), then retries once. Check does not: a
// dead server means dead mounts, which the snapshotter revives through
// Unmount and Mount.
type respawningClient struct {
	*fuseremote.Client
	respawn func(context.Context) error

	mu sync.Mutex // serialises respawns
}

func (r *respawningClient) retry(ctx context.Context, call func() error) error {
	err := call()
	if !errors.Is(err, fuseremote.ErrServerDown) {
		return err
	}
	r.mu.Lock()
	if r.Client.Ping(ctx) != nil {
		log.G(ctx).WithError(err).Warn("the FUSE server is gone; starting it again")
		if serr := r.respawn(ctx); serr != nil {
			r.mu.Unlock()
			return fmt.Errorf("%w (restart: %v)", err, serr)
		}
	}
	r.mu.Unlock()
	return call()
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

func spawnFUSEServer(ctx context.Context, sock string, f flags) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(fuseServerLog(f), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	root, err := filepath.Abs(f.root)
	if err != nil {
		return err
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
		return fmt.Errorf("start fuse server: %w", err)
	}
	log.G(ctx).WithField("pid", cmd.Process.Pid).WithField("socket", sock).Info("started the FUSE server")
	// Reap it if it exits while we run; after we exit, init does.
	go cmd.Wait() //nolint:errcheck
	return nil
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
	m, err := newManager(cfg, ducc.New(cfg.AbsoluteMountpoint))
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	srv, err := fuseremote.NewServer(m, root, fuseremote.WithStop(stop))
	if err != nil {
		return err
	}
	l, err := fuseremote.Listen(sock)
	if err != nil {
		return err
	}
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
