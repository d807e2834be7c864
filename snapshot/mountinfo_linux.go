//go:build linux

package snapshot

import "github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"

// hasMountsUnder reports whether anything is mounted at dir or below it.
// The snapshotter checks it before every RemoveAll.
func hasMountsUnder(dir string) (bool, error) {
	return mountutil.HasMountsUnder(dir)
}

// isMounted reports whether path itself is a mountpoint.
func isMounted(path string) (bool, error) {
	return mountutil.IsMounted(path)
}

// unmountPath unmounts path, lazily if busy; never MNT_FORCE.
func unmountPath(path string) error {
	return mountutil.Unmount(path)
}

// mountpointsUnder lists the mountpoints at dir or below it, deepest first.
func mountpointsUnder(dir string) ([]string, error) {
	ms, err := mountutil.Under(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Mountpoint
	}
	return out, nil
}
