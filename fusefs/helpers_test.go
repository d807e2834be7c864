//go:build linux

package fusefs

import (
	"context"
	"fmt"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// requireFUSE skips the test (fails it when CI=true, unless
// CVMFS_UNIT_ONLY) unless it can mount FUSE filesystems as root.
func requireFUSE(t testing.TB) {
	t.Helper()
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
}

// dirSource serves layers from a map of digest to directory.
type dirSource map[digest.Digest]string

func (s dirSource) OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error) {
	if d, ok := s[layer]; ok {
		return openDirPath(d)
	}
	return nil, fmt.Errorf("layer %s: %w", layer, errdefs.ErrNotFound)
}

// openDirPath opens the directory dir as a Source hands it out: O_PATH.
func openDirPath(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return os.NewFile(uintptr(fd), dir), nil
}

// testDigest returns a valid digest derived from name.
func testDigest(name string) digest.Digest { return digest.FromString(name) }

// sweepMounts lazily unmounts everything under dir when the test ends, so
// that a failing test leaves no mount behind.
func sweepMounts(t testing.TB, dir string) {
	t.Cleanup(func() { testutil.SweepMounts(t, dir) })
}

// mountLayer mounts dir as a layer with a fresh Manager at a new
// mountpoint and returns the manager, the mountpoint and the layer digest.
// Everything is torn down when the test ends.
func mountLayer(t testing.TB, dir string, opts ...Opt) (*Manager, string, digest.Digest) {
	t.Helper()
	requireFUSE(t)
	layer := testDigest(dir)
	m, err := NewManager(dirSource{layer: dir}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	sweepMounts(t, base)
	mp := filepath.Join(base, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(context.Background(), mp, layer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return m, mp, layer
}

// writeFile writes content to root/rel, creating parents.
func writeFile(t testing.TB, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// logEntry returns a logger entry for code under test that logs.
func logEntry(t testing.TB) *log.Entry {
	return log.G(context.Background()).WithField("test", t.Name())
}

// statsOf returns m's per-layer figures.
func statsOf(t testing.TB, m *Manager) []usage.LayerStats {
	t.Helper()
	st, err := m.Stats()
	if err != nil {
		t.Errorf("stats: %v", err)
	}
	return st
}

// profileOf returns m's profile of layer.
func profileOf(t testing.TB, m *Manager, layer digest.Digest) []usage.FileAccess {
	t.Helper()
	p, err := m.Profile(layer)
	if err != nil {
		t.Errorf("profile of %s: %v", layer, err)
	}
	return p
}
