// Package smallfile reads a small file that someone else may have put in
// place (a record, a pid file, a layer store's metadata) without trusting
// it: only a regular file is read, never through a trailing symlink, and
// never more than a bound the caller gives. A FIFO or a device node is
// never opened for reading (it would block, or be opened by root): the
// file is opened O_PATH, checked with fstat, and the very inode checked is
// then opened through /proc/self/fd.
//
// It is a leaf: it knows nothing of layers, mounts or snapshots.
package smallfile
