//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// separateEnv is a daemon with fuse-server = "separate" that has served one
// remote layer, so its FUSE server runs.
type separateEnv struct {
	dir, root, sock, cfg, bin string
	layer                     digest.Digest
	chain                     string // the layer's chain id
	d                         *daemon
	server                    *fuseremote.Client
}

func newSeparateEnv(t *testing.T, extraTOML string) *separateEnv {
	t.Helper()
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	e := &separateEnv{bin: buildDaemon(t), dir: t.TempDir()}
	t.Cleanup(func() { testutil.SweepMounts(t, e.dir) })
	repo := filepath.Join(e.dir, "repo")
	e.layer = layerDigest("separate-env")
	ducctest.WriteLayer(t, repo, e.layer, map[string]string{"f": "data"}, 4)
	e.chain = ducctest.DiffID(e.layer).String()
	e.root = filepath.Join(e.dir, "root")
	e.sock = filepath.Join(e.dir, "fuse.sock")
	e.cfg = fmt.Sprintf("absolute-mountpoint = %q\nfuse-server = \"separate\"\nfuse-server-socket = %q\n%s", repo, e.sock, extraTOML)
	e.server = fuseremote.NewClient(e.sock)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if e.server.Shutdown(ctx) != nil {
			return
		}
		// Its mounts are gone once it has exited.
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if _, err := os.Stat(fuseremote.PIDFile(e.root)); errors.Is(err, os.ErrNotExist) {
				return
			}
		}
	})
	e.d = startDaemon(t, e.bin, e.dir, e.cfg)
	_, err := e.d.client(t).Prepare(context.Background(), "extract-1 chain-1", "", snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref":              e.chain,
		"containerd.io/snapshot/cri.layer-digest": e.layer.String(),
	}))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v", err)
	}
	return e
}

// TestFUSEServerRefuses: the separate FUSE server mounts only at
// <root>/snapshots/<id>/fs, unmounts only its own mounts, and answers only
// its own uid.
func TestFUSEServerRefuses(t *testing.T) {
	e := newSeparateEnv(t, "")
	ctx := context.Background()
	mounted := func(p string) bool {
		t.Helper()
		ok, err := mountutil.IsMounted(p)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	mkdir := func(p string) string {
		t.Helper()
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}

	outside := mkdir(filepath.Join(e.dir, "outside", "fs"))
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(e.root, "snapshots", "999")); err != nil {
		t.Fatal(err)
	}
	mkdir(filepath.Join(e.root, "snapshots", "998"))
	if err := os.Symlink(outside, filepath.Join(e.root, "snapshots", "998", "fs")); err != nil {
		t.Fatal(err)
	}
	for _, mp := range []string{
		outside,
		filepath.Join(e.root, "snapshots", "..", "..", "outside", "fs"),
		filepath.Join(e.root, "snapshots", "999", "fs"), // <id> is a symlink out
		filepath.Join(e.root, "snapshots", "998", "fs"), // fs is a symlink out
		mkdir(filepath.Join(e.root, "snapshots", "997", "fs", "deeper")),
		mkdir(filepath.Join(e.root, "snapshots", "996", "other")),
		"relative/snapshots/1/fs",
	} {
		if err := e.server.Mount(ctx, mp, e.layer); err == nil {
			t.Errorf("Mount at %q accepted", mp)
		} else if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Mount at %q = %v, want ErrInvalidArgument", mp, err)
		}
	}
	if mounted(outside) {
		t.Errorf("the FUSE server mounted a layer at %s", outside)
	}

	// A well-formed mountpoint is served, checked and unmounted.
	good := mkdir(filepath.Join(e.root, "snapshots", "12345", "fs"))
	if err := e.server.Mount(ctx, good, e.layer); err != nil {
		t.Fatalf("Mount at %s: %v", good, err)
	}
	if err := e.server.Check(ctx, good); err != nil {
		t.Errorf("Check of %s: %v", good, err)
	}
	if err := e.server.Unmount(ctx, good); err != nil || mounted(good) {
		t.Errorf("Unmount of %s = %v (still mounted: %v)", good, err, mounted(good))
	}

	// Mounts it did not make are not its to remove, even at a snapshot's
	// fs directory.
	victims := []string{
		mkdir(filepath.Join(e.dir, "victim")),
		mkdir(filepath.Join(e.root, "snapshots", "777", "fs")),
	}
	for _, v := range victims {
		if err := unix.Mount("tmpfs", v, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = mountutil.Unmount(v) })
		err := e.server.Unmount(ctx, v)
		if err == nil {
			t.Errorf("Unmount of %s, not the server's, accepted", v)
		}
		if !mounted(v) {
			t.Errorf("the FUSE server unmounted %s, which it did not mount", v)
		}
	}

	// Another user reaching the socket (its mode loosened) gets nothing.
	for _, p := range []string{filepath.Dir(e.dir), e.dir} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(e.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	c, err := dialAs(65534, e.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /v1/stats HTTP/1.1\r\nHost: fuse-server\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		resp.Body.Close()
		t.Errorf("uid 65534 got an answer from the FUSE server: %s", resp.Status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(readFile(filepath.Join(e.root, "fuse-server.log")), "refused a connection") {
		if time.Now().After(deadline) {
			t.Errorf("the refused connection was not logged:\n%s", readFile(filepath.Join(e.root, "fuse-server.log")))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dialAs connects to the unix socket sock as uid, from a thread whose
// credentials alone are changed; that thread ends with the call.
func dialAs(uid int, sock string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread exits with this goroutine.
		runtime.LockOSThread()
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), 0); errno != 0 {
			ch <- result{err: fmt.Errorf("setresuid: %w", errno)}
			return
		}
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: err}
			return
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
			unix.Close(fd)
			ch <- result{err: fmt.Errorf("connect as uid %d: %w", uid, err)}
			return
		}
		f := os.NewFile(uintptr(fd), sock)
		c, err := net.FileConn(f)
		f.Close()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestFUSEServerStopped: a FUSE server that holds its socket but does not
// answer (SIGSTOP) makes calls fail within their deadline, with a log line
// naming the socket; a daemon started meanwhile starts, stops promptly on
// SIGTERM (also while it is starting) and never spawns a second server;
// once the server runs again, everything works.
func TestFUSEServerStopped(t *testing.T) {
	e := newSeparateEnv(t, "lookup-timeout = \"2s\"\n")
	ctx := context.Background()
	pid := processWith(t, "fuse-server", e.sock)
	e.d.stop(t)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })

	// A plain client call ends within its default deadline.
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- e.server.Ping(ctx) }()
	select {
	case err := <-done:
		if !errdefs.IsUnavailable(err) || errors.Is(err, fuseremote.ErrServerDown) {
			t.Errorf("Ping of a stopped server = %v, want ErrUnavailable, not ErrServerDown", err)
		}
		if d := time.Since(start); d > fuseremote.DefaultCallTimeout+3*time.Second {
			t.Errorf("Ping of a stopped server took %v", d)
		}
	case <-time.After(fuseremote.DefaultCallTimeout + 15*time.Second):
		t.Error("Ping of a stopped server hangs")
	}

	// SIGTERM while the daemon starts: it stops at once, starting nothing.
	cmd, logPath := spawnDaemon(t, e)
	time.Sleep(500 * time.Millisecond)
	start = time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, 5*time.Second, "SIGTERM while starting against a stopped FUSE server", logPath)
	time.Sleep(time.Second)
	if p := processWith(t, "fuse-server", e.sock); p != pid {
		t.Fatalf("another FUSE server (pid %d) replaced the stopped one (pid %d)", p, pid)
	}

	// The daemon starts all the same, says why layers are unavailable, and
	// stops promptly.
	d := startDaemon(t, e.bin, e.dir, e.cfg)
	log := readFile(filepath.Join(e.dir, "daemon.log"))
	if !strings.Contains(log, "does not answer") || !strings.Contains(log, e.sock) {
		t.Errorf("the daemon did not log that the FUSE server at %s does not answer:\n%s", e.sock, log)
	}
	start = time.Now()
	d.stop(t)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("SIGTERM took %v with a stopped FUSE server", took)
	}
	if p := processWith(t, "fuse-server", e.sock); p != pid {
		t.Fatalf("another FUSE server (pid %d) replaced the stopped one (pid %d)", p, pid)
	}

	// The server runs again: the daemon re-attaches and keeps its mount.
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, e.bin, e.dir, e.cfg)
	if _, err := d.client(t).Prepare(ctx, "container", e.chain); err != nil {
		t.Fatalf("Prepare once the FUSE server runs again: %v", err)
	}
	d.stop(t)
	if p := processWith(t, "fuse-server", e.sock); p != pid {
		t.Fatalf("the FUSE server changed: pid %d, was %d", p, pid)
	}
}

// spawnDaemon starts the daemon of e without waiting for it to serve.
func spawnDaemon(t *testing.T, e *separateEnv) (*exec.Cmd, string) {
	t.Helper()
	logPath := filepath.Join(e.dir, "daemon-spawned.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	cmd := exec.Command(e.bin, "--address", filepath.Join(e.dir, "run", "snap.sock"), "--root", e.root,
		"--config", filepath.Join(e.dir, "config.toml"), "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, logPath
}

// waitExit fails t unless cmd exits within d.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration, what, logPath string) {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s: the daemon did not exit within %v; log:\n%s", what, d, readFile(logPath))
	}
}
