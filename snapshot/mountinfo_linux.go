//go:build linux

package snapshot

import "github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"

// hasMountsUnder reports whether anything is mounted at dir or below it.
// The snapshotter checks it before every RemoveAll.
func hasMountsUnder(dir string) (bool, error) {
	return mountutil.HasMountsUnder(dir)
}
