// Package atomicfile replaces a file whole: a reader (or a restart after
// a crash) finds the old content or the new one, never a part of either.
// The content goes to a temporary file in the same directory, created
// anew (O_EXCL, O_NOFOLLOW: never a file someone put there, never through
// a symlink), synced, then renamed over the name, and the directory is
// synced so that the rename outlives a crash.
//
// A crash can leave a temporary file behind: its name starts with
// TempPrefix, for the owner of the directory to clear.
//
// It is a leaf: it knows nothing of layers, mounts or snapshots.
package atomicfile
