//go:build linux

package testutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// SweepMounts stops the custody processes of daemons under dir (see
// StopCustodies), then lazily unmounts everything mounted at dir or below
// it, deepest first, and reports what it found through t.Log. It returns
// the mountpoints that were still mounted.
func SweepMounts(t testing.TB, dir string) []string {
	t.Helper()
	StopCustodies(t, dir)
	ms, err := mountutil.Under(dir)
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
		return nil
	}
	var left []string
	for _, m := range ms {
		left = append(left, m.Mountpoint)
		t.Logf("sweeping leftover %s mount at %s", m.FSType, m.Mountpoint)
		if err := mountutil.Unmount(m.Mountpoint); err != nil {
			t.Errorf("unmount leftover %s: %v", m.Mountpoint, err)
		}
	}
	return left
}

// TempDir returns a temporary directory that is swept of mounts (lazily
// unmounted) before it is removed at the end of the test.
func TempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { SweepMounts(t, dir) })
	return dir
}

// RemovableTempDir returns a temporary directory whose tree is made
// writable again before it is removed: tests that unpack read-only
// directories (mode 0555, 0000) would otherwise fail their cleanup when
// not running as root.
func RemovableTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return dir
}
