//go:build linux

package ducc_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestRemovePartial: the partial trees of writes a killed ingest left are
// removed; those of a write in progress (it holds a lock on its tree), a
// tree too young to tell, and the layers are kept.
func TestRemovePartial(t *testing.T) {
	ctx := context.Background()
	repo := ducc.New(filepath.Join(t.TempDir(), "repo"))
	blob, _ := blobOf(testutil.MustLayer(testutil.File("f", "x")), "")
	// While WriteLayer writes, its tree is locked.
	locked := false
	open := blob.Open
	blob.Open = func(ctx context.Context) (io.ReadCloser, error) {
		dir, _ := repo.LayerDir(blob.Digest)
		tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".tmp-*"))
		for _, tmp := range tmps {
			if fd, err := unix.Open(tmp, unix.O_RDONLY|unix.O_DIRECTORY, 0); err == nil {
				locked = unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == unix.EWOULDBLOCK
				unix.Close(fd)
			}
		}
		return open(ctx)
	}
	if _, err := repo.WriteLayer(ctx, blob); err != nil {
		t.Fatal(err)
	}
	if !locked {
		t.Error("the tree being written was not locked")
	}
	layers := filepath.Join(repo.Root(), ".layers")
	old := time.Now().Add(-time.Hour)
	partial := func(name string, age time.Time) string {
		p := filepath.Join(layers, "ab", name)
		if err := os.MkdirAll(filepath.Join(p, "layerfs", "usr"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "layerfs", "usr", "f"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, age, age); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := partial(".tmp-abcdef012345-1", old)
	live := partial(".tmp-abcdef012345-2", old)
	fresh := partial(".tmp-abcdef012345-3", time.Now())
	fd, err := unix.Open(live, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	n, err := repo.RemovePartial(ctx)
	if err != nil || n != 1 {
		t.Errorf("RemovePartial = %d, %v; want 1 removed", n, err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Errorf("stale partial tree left: %v", err)
	}
	for _, p := range []string{live, fresh} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	if _, err := repo.Lookup(ctx, blob.Digest); err != nil {
		t.Errorf("layer lost: %v", err)
	}
}
