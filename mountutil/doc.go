// Package mountutil holds the few mount-table operations that every layer
// mounter and the snapshotter share: find mounts under a directory, tell
// whether a path is a mountpoint without a call into the mount, unmount
// safely, and unmount a set of mounts in parallel.
//
// Nothing here ever uses MNT_FORCE: on a CVMFS client it can unmount the
// repository itself. It knows nothing of layers, FUSE or snapshots.
package mountutil
