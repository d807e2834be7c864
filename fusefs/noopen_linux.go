//go:build linux

package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var _ = (fs.NodeReader)((*node)(nil))

// Read serves a READ. Through a handle from Open it is that file's Read.
// Without one (accounting "reads": the kernel no longer sends OPEN, see
// skippedRequests) it opens the backing file beneath the layer root for this
// one request; the kernel keeps what it read in the page cache across
// opens, so a file's content normally reaches the daemon once. A READ at
// offset 0 counts as one open of the file (a fetch of its content), and
// every byte served is counted; a READ of the prefetch page reader is
// served and not counted.
func (n *node) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	switch f := fh.(type) {
	case *file:
		return f.Read(ctx, dest, off)
	case *passthroughFile:
		return f.Read(ctx, dest, off)
	}
	k, errno := n.readRange(dest, off)
	if n.tree.pages.fromReader(ctx) {
		if errno != 0 {
			return nil, errno
		}
		return fuse.ReadResultData(dest[:k]), 0
	}
	a := n.tree.acct.begin(&n.tree.acct.reads)
	if errno != 0 {
		return nil, a.fail(errno)
	}
	var prof *fileStat
	if off == 0 {
		prof = a.opened(n.rel)
	} else {
		prof = a.profiled(n.rel, false)
	}
	a.bytesRead.Add(int64(k))
	prof.addBytes(int64(k))
	return fuse.ReadResultData(dest[:k]), 0
}

// readRange reads the range of n's backing file into dest, opened beneath
// the layer root for this one request.
func (n *node) readRange(dest []byte, off int64) (int, syscall.Errno) {
	if n.whiteout || n.attr.Mode&sIFMT != sIFREG {
		return 0, syscall.EINVAL
	}
	fd, err := openBackingRead(n.tree.rootfd, n.rel)
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	defer unix.Close(fd)
	k, err := preadFull(fd, dest, off)
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	return k, 0
}
