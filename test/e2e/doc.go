// Package e2e holds the end-to-end scenarios: real containerd (2.x and
// 1.6), runc, cvmfs-snapshotter, an in-process registry and a DUCC-shaped
// repository, driven through package harness. The tests need root, FUSE,
// runc and containerd; they skip naming what is missing, and fail instead
// when CI=true. CVMFS_UNIT_ONLY=1 (make unit) skips them all.
package e2e
