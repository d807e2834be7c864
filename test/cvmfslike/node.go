//go:build linux

package cvmfslike

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

// node is a path of the store. Once its path is gone at a Reload it is
// stale: everything on it answers ENOENT.
type node struct {
	fs.Inode
	s     *Store
	rel   string // relative to the backing root; "" is the root
	stale atomic.Bool
}

// key names the node's content in the store's cache.
func (n *node) key() string { return n.rel + "#" + strconv.FormatUint(n.StableAttr().Gen, 10) }

func (n *node) path() string { return filepath.Join(n.s.backing, n.rel) }

// open opens n's backing file for reading, resolved beneath the backing
// tree by beneath.Open: a symlink in the tree is served as one (Readlink),
// never followed, as cvmfs2 never follows one of its repository's.
func (n *node) open() (int, error) {
	root, err := unix.Open(n.s.backing, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(root)
	return beneath.Open(root, n.rel, unix.O_RDONLY)
}

// fill sets out from st as the client presents it: path-derived inode,
// whole-second times (the catalog keeps no more), owners claimed or as
// stored.
func (n *node) fill(st *syscall.Stat_t, rel string, out *fuse.Attr) {
	out.FromStat(st)
	out.Ino = inoOf(rel)
	out.Atimensec, out.Mtimensec, out.Ctimensec = 0, 0, 0
	if n.s.cfg.claim {
		out.Uid, out.Gid = n.s.cfg.uid, n.s.cfg.gid
	}
}

var (
	_ = (fs.NodeLookuper)((*node)(nil))
	_ = (fs.NodeGetattrer)((*node)(nil))
	_ = (fs.NodeReaddirer)((*node)(nil))
	_ = (fs.NodeOpener)((*node)(nil))
	_ = (fs.NodeReadlinker)((*node)(nil))
	_ = (fs.NodeStatfser)((*node)(nil))
	_ = (fs.NodeOnForgetter)((*node)(nil))
)

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	n.s.lookups.Add(1)
	rel := filepath.Join(n.rel, name)
	if d := time.Duration(n.s.lookupDelay.Load()); d > 0 {
		if errno := sleep(ctx, d); errno != 0 {
			return nil, errno
		}
	}
	if ch := n.s.hangFor(rel); ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, syscall.EINTR
		}
	}
	if n.stale.Load() {
		return nil, syscall.ENOENT
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(n.s.backing, rel), &st); err != nil {
		return nil, syscall.ENOENT
	}
	n.fill(&st, rel, &out.Attr)
	child := &node{s: n.s, rel: rel}
	in := n.NewInode(ctx, child, n.s.stable(rel, st.Mode))
	n.s.register(in.Operations().(*node))
	return in, 0
}

// sleep waits d or until ctx (the request) is interrupted.
func sleep(ctx context.Context, d time.Duration) syscall.Errno {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	}
}

func (n *node) OnForget() { n.s.forget(n) }

func (n *node) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if n.stale.Load() {
		return syscall.ENOENT
	}
	if f, ok := fh.(*file); ok {
		return f.Getattr(ctx, out)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(n.path(), &st); err != nil {
		return syscall.ENOENT
	}
	n.fill(&st, n.rel, &out.Attr)
	return 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	if n.stale.Load() {
		return nil, syscall.ENOENT
	}
	des, err := os.ReadDir(n.path())
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	out := make([]fuse.DirEntry, 0, len(des))
	for _, de := range des {
		out = append(out, fuse.DirEntry{
			Name: de.Name(),
			Ino:  inoOf(filepath.Join(n.rel, de.Name())),
			Mode: modeType(de.Type()),
		})
	}
	return fs.NewListDirStream(out), 0
}

// modeType converts the type bits of an os.FileMode to S_IF*.
func modeType(m os.FileMode) uint32 {
	switch {
	case m&os.ModeDir != 0:
		return syscall.S_IFDIR
	case m&os.ModeSymlink != 0:
		return syscall.S_IFLNK
	case m&os.ModeNamedPipe != 0:
		return syscall.S_IFIFO
	case m&os.ModeSocket != 0:
		return syscall.S_IFSOCK
	case m&os.ModeCharDevice != 0:
		return syscall.S_IFCHR
	case m&os.ModeDevice != 0:
		return syscall.S_IFBLK
	}
	return syscall.S_IFREG
}

// Open makes an OPEN round trip of every open (the kernel is never told
// it may skip them), charges the miss delay on the first, and keeps the
// page cache across opens, as cvmfs2 does.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.stale.Load() {
		return nil, 0, syscall.ENOENT
	}
	n.s.opens.Add(1)
	if matches(&n.s.eioOpen, n.rel) {
		n.s.ioErrors.Add(1)
		return nil, 0, syscall.EIO
	}
	n.s.miss(ctx, n.key())
	// Never O_NOATIME (overlayfs asks for it): the backing files need not
	// be ours.
	fd, err := n.open()
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	return &file{n: n, fd: fd}, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.stale.Load() {
		return nil, syscall.ENOENT
	}
	target, err := os.Readlink(n.path())
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return []byte(target), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.s.backing, &st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

// file is an open file: reads come to the server (no passthrough fd).
type file struct {
	n  *node
	fd int
}

var (
	_ = (fs.FileReader)((*file)(nil))
	_ = (fs.FileGetattrer)((*file)(nil))
	_ = (fs.FileReleaser)((*file)(nil))
)

func (f *file) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f.n.s.reads.Add(1)
	if f.n.stale.Load() {
		return nil, syscall.ENOENT
	}
	if matches(&f.n.s.eioRead, f.n.rel) {
		f.n.s.ioErrors.Add(1)
		return nil, syscall.EIO
	}
	got, err := unix.Pread(f.fd, dest, off)
	if err != nil {
		return nil, fs.ToErrno(err)
	}
	return fuse.ReadResultData(dest[:got]), 0
}

func (f *file) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	if f.n.stale.Load() {
		return syscall.ENOENT
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(f.fd, &st); err != nil {
		return fs.ToErrno(err)
	}
	f.n.fill(&st, f.n.rel, &out.Attr)
	return 0
}

func (f *file) Release(ctx context.Context) syscall.Errno {
	return fs.ToErrno(unix.Close(f.fd))
}
