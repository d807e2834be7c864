//go:build linux

package fusefs

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

func newDir(t testing.TB, base, name string) string {
	t.Helper()
	p := filepath.Join(base, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestManagerLifecycle(t *testing.T) {
	requireFUSE(t)
	ctx := context.Background()
	src := t.TempDir()
	writeFile(t, src, "f", "f")
	layer, other := testDigest("layer"), testDigest("other")
	m, err := NewManager(dirSource{layer: src, other: src})
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	sweepMounts(t, base)
	mp1, mp2, mp3 := newDir(t, base, "1"), newDir(t, base, "2"), newDir(t, base, "3")

	// A missing layer: ErrNotFound, nothing mounted.
	if err := m.Mount(ctx, mp3, testDigest("absent")); !errdefs.IsNotFound(err) {
		t.Errorf("mount of an absent layer: %v, want ErrNotFound", err)
	}
	if ok, _ := mountutil.IsMounted(mp3); ok {
		t.Error("failed mount left a mount behind")
	}

	// One layer at two mountpoints; the same mount twice is a no-op.
	for _, mp := range []string{mp1, mp2, mp1} {
		if err := m.Mount(ctx, mp, layer); err != nil {
			t.Fatalf("mount at %s: %v", mp, err)
		}
	}
	if err := m.Mount(ctx, mp1, other); !errdefs.IsAlreadyExists(err) {
		t.Errorf("other layer on a used mountpoint: %v, want ErrAlreadyExists", err)
	}
	for _, mp := range []string{mp1, mp2} {
		if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "f" {
			t.Errorf("read through %s: %q, %v", mp, b, err)
		}
		if err := m.Check(ctx, mp); err != nil {
			t.Errorf("check %s: %v", mp, err)
		}
	}
	if err := m.Check(ctx, mp3); !errdefs.IsNotFound(err) {
		t.Errorf("check of an unmounted dir: %v, want ErrNotFound", err)
	}

	// Named after the layer in mountinfo, read-only.
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp1))
	if err != nil || len(infos) != 1 {
		t.Fatalf("mountinfo for %s: %v, %v", mp1, infos, err)
	}
	if d, ok := LayerFromFsName(infos[0].Source); !ok || d != layer || infos[0].FSType != FsType {
		t.Errorf("mountinfo source %q type %q", infos[0].Source, infos[0].FSType)
	}
	if _, ok := LayerFromFsName("overlay"); ok {
		t.Error("LayerFromFsName accepted a foreign source")
	}

	s := statsOf(t, m)
	if len(s) != 1 || s[0].Mounts != 2 {
		t.Errorf("stats %+v, want one layer with 2 mounts", s)
	}
	if err := m.Unmount(ctx, mp2); err != nil {
		t.Fatal(err)
	}
	if err := m.Unmount(ctx, mp2); err != nil {
		t.Errorf("second unmount: %v", err)
	}
	if ok, _ := mountutil.IsMounted(mp2); ok {
		t.Error("still mounted after Unmount")
	}
	if s := statsOf(t, m); s[0].Mounts != 1 {
		t.Errorf("mounts after unmount = %d, want 1", s[0].Mounts)
	}

	// Close unmounts the rest, is idempotent and refuses new mounts.
	for range 2 {
		if err := m.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := mountutil.IsMounted(mp1); ok {
		t.Error("still mounted after Close")
	}
	if err := m.Mount(ctx, mp1, layer); err == nil {
		t.Error("mount after Close succeeded")
	}
}

func TestBusyUnmountIsLazy(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	writeFile(t, src, "f", "f")
	m, mp, _ := mountLayer(t, src)
	f, err := os.Open(filepath.Join(mp, "f")) // keeps the mount busy
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := m.Unmount(context.Background(), mp); err != nil {
		t.Fatalf("unmount of a busy mount: %v", err)
	}
	if ok, _ := mountutil.IsMounted(mp); ok {
		t.Error("busy mount not detached")
	}
}

// The dead-mount test runs the server in a child process (this test binary
// re-executed) and kills it, as a crashed daemon would leave a mount.
const (
	serveDirEnv = "FUSEFS_TEST_SERVE_DIR"
	serveMntEnv = "FUSEFS_TEST_SERVE_MNT"
)

// TestMain runs the tests, or, in the child process of TestDeadMount,
// serves a layer until killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(serveDirEnv); dir != "" {
		serveUntilKilled(dir, os.Getenv(serveMntEnv))
	}
	if os.Getenv(pageReaderEnv) != "" {
		if err := RunPageReader(os.Stdin, os.Stdout, 2); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Lifecycle lines ("layer mounted") would interleave with benchmark
	// output; warnings and errors still show.
	if err := log.SetLevel("warn"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

func serveUntilKilled(dir, mp string) {
	layer := testDigest(dir)
	m, err := NewManager(dirSource{layer: dir})
	if err == nil {
		err = m.Mount(context.Background(), mp, layer)
	}
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	select {}
}

// TestDeadMount: a mount whose server was killed is reported
// dead by Check and removed by Unmount.
func TestDeadMount(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	writeFile(t, src, "f", "f")
	base := t.TempDir()
	sweepMounts(t, base)
	mp := newDir(t, base, "mnt")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveDirEnv+"="+src, serveMntEnv+"="+mp)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}

	m, err := NewManager(dirSource{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.Check(ctx, mp); err != nil {
		t.Fatalf("check of the live mount: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if err := m.Check(ctx, mp); !errdefs.IsUnavailable(err) {
		t.Fatalf("check of a dead mount: %v, want ErrUnavailable", err)
	}
	if _, err := os.Stat(filepath.Join(mp, "f")); err == nil {
		t.Error("dead mount still answers")
	}
	if err := m.Unmount(ctx, mp); err != nil {
		t.Fatalf("unmount of a dead mount: %v", err)
	}
	if ok, _ := mountutil.IsMounted(mp); ok {
		t.Error("dead mount still mounted")
	}
	if err := m.Check(ctx, mp); !errdefs.IsNotFound(err) {
		t.Errorf("check after unmount: %v, want ErrNotFound", err)
	}
}

// panicNode panics on every getattr.
type panicNode struct{ fs.Inode }

func (n *panicNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	panic("boom")
}

// TestPanicAnswersEIO mounts a node that panics with the Manager's panic
// handler: the request fails with EIO, the panic is counted, the process
// lives on.
func TestPanicAnswersEIO(t *testing.T) {
	requireFUSE(t)
	base := t.TempDir()
	sweepMounts(t, base)
	mp := newDir(t, base, "mnt")
	acct := newAccount(1)
	entry := logEntry(t)
	root := &panicNode{}
	opts := &fs.Options{}
	opts.PanicHandler = panicHandler(acct, entry)
	server, err := fs.Mount(mp, root, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Unmount()
	if _, err := os.Stat(mp); !errors.Is(err, syscall.EIO) {
		t.Errorf("stat of a panicking node: %v, want EIO", err)
	}
	if acct.panics.Load() == 0 {
		t.Error("panic not counted")
	}
}

// cancellingSource cancels the caller's context while answering, so that
// Mount fails after the FUSE mount succeeded.
type cancellingSource struct {
	dir    string
	cancel context.CancelFunc
}

func (s cancellingSource) OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error) {
	s.cancel()
	return openDirPath(s.dir)
}

// TestMountFailureLeavesNothing: a failure after the mount itself (here the
// caller giving up) unmounts before Mount returns.
func TestMountFailureLeavesNothing(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	base := t.TempDir()
	sweepMounts(t, base)
	mp := newDir(t, base, "mnt")
	ctx, cancel := context.WithCancel(context.Background())
	m, err := NewManager(cancellingSource{dir: src, cancel: cancel})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if err := m.Mount(ctx, mp, testDigest("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("mount with a cancelled context: %v", err)
	}
	if ok, _ := mountutil.IsMounted(mp); ok {
		t.Error("mount left behind after a failed Mount")
	}
	if s := statsOf(t, m); len(s) != 0 {
		t.Errorf("stats after a failed mount: %+v, want none", s)
	}
}
