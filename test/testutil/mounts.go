//go:build linux

package testutil

import (
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// SweepMounts lazily unmounts everything mounted at dir or below it,
// deepest first, and reports what it found through t.Log. It returns the
// mountpoints that were still mounted.
func SweepMounts(t testing.TB, dir string) []string {
	t.Helper()
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
