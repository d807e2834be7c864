//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// separateEnv is a daemon with fuse-server = "separate" that has served one
// remote layer, so its FUSE server runs.
type separateEnv struct {
	dir, root, sock, cfg, bin string
	layer                     digest.Digest
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
	lfs := filepath.Join(repo, ".layers", e.layer.Encoded()[:2], e.layer.Encoded(), "layerfs")
	if err := os.MkdirAll(lfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lfs, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.root = filepath.Join(e.dir, "root")
	e.sock = filepath.Join(e.dir, "fuse.sock")
	e.cfg = fmt.Sprintf("absolute-mountpoint = %q\nfuse-server = \"separate\"\nfuse-server-socket = %q\n%s", repo, e.sock, extraTOML)
	e.server = fuseremote.NewClient(e.sock)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.server.Shutdown(ctx)
	})
	e.d = startDaemon(t, e.bin, e.dir, e.cfg)
	_, err := e.d.client(t).Prepare(context.Background(), "extract-1 chain-1", "", snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref":              "chain-1",
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

