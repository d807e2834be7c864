//go:build linux

package bindmount

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestMountKeepsStoreFlags: the read-only bind mount of a layer keeps the
// store mount's nosuid, nodev and noexec (a plain read-only remount would
// clear them, making the layer's setuid binaries and devices live again).
func TestMountKeepsStoreFlags(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	store := filepath.Join(tmp, "store")
	if err := os.Mkdir(store, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", store, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(store, unix.MNT_DETACH) })
	layer := digest.FromString("layer")
	repo := ducc.New(filepath.Join(store, "repo"))
	src, _ := repo.UnpackedDir(layer)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(tmp, "mp")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	m := New(repo)
	if err := m.Mount(ctx, mp, layer); err != nil {
		t.Fatal(err)
	}
	defer m.Unmount(ctx, mp)
	var sfs unix.Statfs_t
	if err := unix.Statfs(mp, &sfs); err != nil {
		t.Fatal(err)
	}
	want := int64(unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC)
	if sfs.Flags&want != want {
		t.Errorf("layer mount flags %#x, want rdonly,nosuid,nodev,noexec (%#x) set", sfs.Flags, want)
	}
}
