//go:build linux

package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Every mutation answers EROFS. The mount is read-only already, so the
// kernel refuses most of them first; these are the second line, and they
// matter because go-fuse's defaults are not all errors: an unimplemented
// Unlink or Rmdir *succeeds* and drops the child from the tree.

// erofs counts and returns EROFS.
func (n *node) erofs() syscall.Errno { return n.tree.acct.fail(syscall.EROFS) }

var (
	_ = (fs.NodeSetattrer)((*node)(nil))
	_ = (fs.NodeSetxattrer)((*node)(nil))
	_ = (fs.NodeRemovexattrer)((*node)(nil))
	_ = (fs.NodeMkdirer)((*node)(nil))
	_ = (fs.NodeMknoder)((*node)(nil))
	_ = (fs.NodeCreater)((*node)(nil))
	_ = (fs.NodeTmpfiler)((*node)(nil))
	_ = (fs.NodeSymlinker)((*node)(nil))
	_ = (fs.NodeLinker)((*node)(nil))
	_ = (fs.NodeUnlinker)((*node)(nil))
	_ = (fs.NodeRmdirer)((*node)(nil))
	_ = (fs.NodeRenamer)((*node)(nil))
	_ = (fs.NodeWriter)((*node)(nil))
	_ = (fs.NodeWritever)((*node)(nil))
	_ = (fs.NodeAllocater)((*node)(nil))
	_ = (fs.NodeCopyFileRanger)((*node)(nil))
	_ = (fs.NodeFsyncer)((*node)(nil))
)

// Setattr (chmod, chown, truncate, utimes) is EROFS.
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return n.erofs()
}

// Setxattr is EROFS.
func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	return n.erofs()
}

// Removexattr is EROFS.
func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	return n.erofs()
}

// Mkdir is EROFS.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, n.erofs()
}

// Mknod is EROFS.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, n.erofs()
}

// Create is EROFS.
func (n *node) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, n.erofs()
}

// Tmpfile is EROFS.
func (n *node) Tmpfile(ctx context.Context, flags, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, n.erofs()
}

// Symlink is EROFS.
func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, n.erofs()
}

// Link is EROFS.
func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	return nil, n.erofs()
}

// Unlink is EROFS (go-fuse's default would report success).
func (n *node) Unlink(ctx context.Context, name string) syscall.Errno { return n.erofs() }

// Rmdir is EROFS (go-fuse's default would report success).
func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno { return n.erofs() }

// Rename is EROFS.
func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return n.erofs()
}

// Write is EROFS.
func (n *node) Write(ctx context.Context, f fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, n.erofs()
}

// Writev is EROFS.
func (n *node) Writev(ctx context.Context, f fs.FileHandle, data [][]byte, off int64) (uint32, syscall.Errno) {
	return 0, n.erofs()
}

// Allocate is EROFS.
func (n *node) Allocate(ctx context.Context, f fs.FileHandle, off, size uint64, mode uint32) syscall.Errno {
	return n.erofs()
}

// CopyFileRange is EROFS: it is only sent with this mount as destination.
func (n *node) CopyFileRange(ctx context.Context, fhIn fs.FileHandle, offIn uint64, out *fs.Inode, fhOut fs.FileHandle, offOut, length, flags uint64) (uint32, syscall.Errno) {
	return 0, n.erofs()
}

// Fsync has nothing to flush.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno { return 0 }
