//go:build linux

package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var _ = (fs.NodeOpener)((*node)(nil))

// Open opens the backing file read-only. Any write access or O_TRUNC is
// EROFS. The caller's flags are not forwarded: overlayfs opens lower files
// with O_NOATIME, which fails with EPERM for a server that does not own the
// backing file (every rootless setup), and O_APPEND, O_DIRECT and the like
// mean nothing for a read-only file.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	tree := n.tree
	a := tree.acct.begin(nil)
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, a.fail(syscall.EROFS)
	}
	if n.whiteout || n.attr.Mode&sIFMT != sIFREG {
		// The kernel opens devices and fifos itself; nothing else is
		// opened here.
		return nil, 0, a.fail(syscall.EINVAL)
	}
	fd, err := openBacking(tree.rootfd, n.rel)
	if err != nil {
		return nil, 0, a.fail(fs.ToErrno(err))
	}
	prof := a.opened(n.rel)
	size := int64(n.attr.Size)
	passthrough := tree.passthrough.Load()
	f := &file{fd: fd, size: size, acct: a, prof: prof, countBytes: !passthrough}
	// FOPEN_KEEP_CACHE: the file never changes, so the page cache stays
	// valid across opens. go-fuse clears it when passthrough is granted.
	if !passthrough {
		return f, fuse.FOPEN_KEEP_CACHE, 0
	}
	a.bytesRead.Add(size)
	prof.addBytes(size)
	return &passthroughFile{f}, fuse.FOPEN_KEEP_CACHE, 0
}

// file is an open backing file served in userspace.
type file struct {
	fd         int
	size       int64
	acct       *account
	prof       *fileStat
	countBytes bool // false when open accounting counted the size already
}

var _ = (fs.FileReader)((*file)(nil))

// Read reads the range from the backing file into dest and counts the
// bytes it got. It reads itself rather than returning go-fuse's lazy
// splice result: a splice that fails is retried, logged and answered EIO
// inside go-fuse, where the error could not be counted and would be logged
// on the read path.
func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.acct.reads.Add(1)
	n, err := preadFull(f.fd, dest, off)
	if err != nil {
		return nil, f.acct.fail(fs.ToErrno(err))
	}
	if f.countBytes {
		f.acct.bytesRead.Add(int64(n))
		f.prof.addBytes(int64(n))
	}
	return fuse.ReadResultData(dest[:n]), 0
}

// preadFull reads until dest is full or the file ends: a backing FUSE
// filesystem (CVMFS) may return short reads.
func preadFull(fd int, dest []byte, off int64) (int, error) {
	total := 0
	for total < len(dest) {
		n, err := unix.Pread(fd, dest[total:], off+int64(total))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

var _ = (fs.FileLseeker)((*file)(nil))

// Lseek answers SEEK_DATA and SEEK_HOLE from the backing file, so sparse
// files stay sparse when copied.
func (f *file) Lseek(ctx context.Context, off uint64, whence uint32) (uint64, syscall.Errno) {
	n, err := unix.Seek(f.fd, int64(off), int(whence))
	if err != nil {
		return 0, f.acct.fail(fs.ToErrno(err))
	}
	return uint64(n), 0
}

var _ = (fs.FileReleaser)((*file)(nil))

// Release closes the backing descriptor; go-fuse waits for reads in flight
// first.
func (f *file) Release(ctx context.Context) syscall.Errno {
	return fs.ToErrno(unix.Close(f.fd))
}

// passthroughFile is a file whose descriptor go-fuse may register with the
// kernel, which then serves reads itself: the daemon sees no READ.
type passthroughFile struct{ *file }

var _ = (fs.FilePassthroughFder)((*passthroughFile)(nil))

// PassthroughFd returns the backing descriptor, which stays open until
// Release.
func (f *passthroughFile) PassthroughFd() (int, bool) { return f.fd, true }
