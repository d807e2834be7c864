//go:build linux

package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestCleanupSkipsDirsInUse: Cleanup never deletes an orphaned directory
// that a live mount uses: the upper dir of a container's overlay mounted
// elsewhere, or a directory with something mounted beneath it. Once the
// mount is gone, the next Cleanup removes it.
func TestCleanupSkipsDirsInUse(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	sn := newTestSnapshotter(t, filepath.Join(tmp, "root"), newFakeLayerFS())

	if _, err := sn.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "base-c", "base"); err != nil {
		t.Fatal(err)
	}
	ms, err := sn.Prepare(ctx, "container", "base-c")
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, rootfs); err != nil {
		t.Fatalf("mount container rootfs: %v", err)
	}
	t.Cleanup(func() { _ = mount.UnmountAll(rootfs, 0) })
	if err := os.WriteFile(filepath.Join(rootfs, "written"), []byte("by the container"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The container's snapshot disappears from the metadata while its
	// overlay is still mounted (a lost or foreign database would do the
	// same): Remove and Cleanup must both leave its upper dir alone.
	if err := sn.Remove(ctx, "container"); err != nil {
		t.Fatal(err)
	}
	upper := ""
	for _, o := range ms[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		}
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(upper, "written")); err != nil || string(b) != "by the container" {
		t.Fatalf("upper dir of a mounted overlay deleted: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "written")); err != nil || string(b) != "by the container" {
		t.Fatalf("container rootfs lost its data: %q, %v", b, err)
	}

	// Something mounted deeper in an orphan's tree: kept, mount untouched.
	orphan := removeFromMetadataOnly(t, sn, "orphan")
	sub := filepath.Join(orphan, "fs", "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sub, "f")); err != nil {
		t.Fatalf("Cleanup went into a mount: %v", err)
	}

	// The mounts go away: the next Cleanup removes both directories.
	if err := mount.UnmountAll(rootfs, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(sub, 0); err != nil {
		t.Fatal(err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Dir(upper), orphan} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s left after its mounts went: %v", dir, err)
		}
	}
}
