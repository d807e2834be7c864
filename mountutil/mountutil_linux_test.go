//go:build linux

package mountutil_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

func TestUnderAndUnmount(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	outer, inner := filepath.Join(dir, "a"), filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(outer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", outer, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mountutil.UnmountAll(dir) })
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	ms, err := mountutil.Under(dir)
	if err != nil || len(ms) != 2 || ms[0].Mountpoint != inner || ms[1].Mountpoint != outer || ms[0].FSType != "tmpfs" {
		t.Fatalf("Under = %+v, %v; want inner then outer", ms, err)
	}
	// A sibling whose name shares the prefix is not "under".
	if ms, _ := mountutil.Under(dir + "/"); len(ms) != 2 {
		t.Fatalf("Under with a trailing slash = %+v", ms)
	}
	if ms, _ := mountutil.Under(filepath.Join(dir, "a", "bb")); len(ms) != 0 {
		t.Fatalf("mountutil.Under(a/bb) = %+v", ms)
	}
	if ok, _ := mountutil.IsMounted(inner); !ok {
		t.Fatal("mountutil.IsMounted(inner) = false")
	}
	if ok, _ := mountutil.IsMounted(dir); ok {
		t.Fatal("mountutil.IsMounted(dir) = true")
	}

	// Busy: a plain unmount fails with EBUSY, the lazy one succeeds.
	f, err := os.Create(filepath.Join(inner, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := mountutil.Unmount(inner); err != nil {
		t.Fatalf("Unmount of a busy mount: %v", err)
	}
	if ok, _ := mountutil.IsMounted(inner); ok {
		t.Fatal("busy mount still attached")
	}
	if err := mountutil.Unmount(inner); err != nil {
		t.Fatalf("Unmount of something not mounted: %v", err)
	}
	if err := mountutil.Unmount(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("Unmount of a missing path: %v", err)
	}
	if err := mountutil.UnmountAll(dir); err != nil {
		t.Fatal(err)
	}
	if has, _ := mountutil.HasMountsUnder(dir); has {
		t.Fatal("mounts left after UnmountAll")
	}
}

// TestIsMountedAgreesWithMountinfo checks the openat2 answer against the
// mount table, and the cases where they may differ by design.
func TestIsMountedAgreesWithMountinfo(t *testing.T) {
	testutil.RequiresRoot(t)
	dir := t.TempDir()
	mnt, plain := filepath.Join(dir, "mnt"), filepath.Join(dir, "plain")
	for _, d := range []string{mnt, plain} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mountutil.UnmountAll(dir) })
	// The mount's own root has a directory of the same name in it: only
	// the covered one is a mountpoint.
	if err := os.Mkdir(filepath.Join(mnt, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mnt, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{mnt, true},
		{mnt + "/", true},
		{plain, false},
		{filepath.Join(mnt, "mnt"), false},
		{filepath.Join(dir, "missing"), false},
		{filepath.Join(dir, "missing", "deeper"), false},
		{filepath.Join(plain, "file-as-parent", "x"), false},
		{filepath.Join(dir, "link"), false}, // a symlink is not followed
		{"/", true},
	} {
		got, err := mountutil.IsMounted(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("mountutil.IsMounted(%q) = %v, %v; want %v", tc.path, got, err, tc.want)
		}
		if tc.path == "/" {
			continue
		}
		if mi, err := mountutil.IsMountedMountinfo(tc.path); err != nil || mi != got {
			t.Errorf("mount table says %v, %v for %q; openat2 %v", mi, err, tc.path, got)
		}
	}
}

// An unprivileged caller (a rootless daemon) asking to unmount a mount
// that is not its own FUSE mount gets an error, and the mount stays:
// fusermount3 answers "not found in /etc/mtab" for it, which is no proof
// that nothing is mounted there.
func TestUnmountUnprivilegedRefused(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		testutil.Skip(t, "fusermount3 not installed: %v", err)
	}
	dir, err := os.MkdirTemp("", "mountutil-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	mp := filepath.Join(dir, "m")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mp, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })
	// The test binary, where the unprivileged child can run it.
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "mountutil.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestHelperUnmount$")
	cmd.Env = append(os.Environ(), "MOUNTUTIL_UNMOUNT="+mp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "unmount-error:") {
		t.Errorf("Unmount as uid 65534 of root's tmpfs: %s; want an error", out)
	}
	if ok, err := mountutil.IsMounted(mp); err != nil || !ok {
		t.Errorf("the tmpfs is gone (%v, %v)", ok, err)
	}
}

// TestHelperUnmount is TestUnmountUnprivilegedRefused's child.
func TestHelperUnmount(t *testing.T) {
	mp := os.Getenv("MOUNTUTIL_UNMOUNT")
	if mp == "" {
		t.Skip("the child process of TestUnmountUnprivilegedRefused")
	}
	if err := mountutil.Unmount(mp); err != nil {
		fmt.Printf("unmount-error: %v\n", err)
	} else {
		fmt.Println("unmount-ok")
	}
}
