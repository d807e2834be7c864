//go:build linux

package fusefs

import (
	"context"
	"fmt"
	"os"
	"path"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

// layerTree is what every node of one mount shares: the layer root, the
// layer's accounting and the shared attribute cache.
type layerTree struct {
	layer   digest.Digest
	rootfd  int // O_PATH descriptor of the layer root; every path resolves beneath it
	rootDev uint64
	rootIno uint64 // with rootDev, which directory of the store is served
	acct    *account
	cache   *cache.Attrs
	// passthrough is set (once, right after the mount) when kernel
	// passthrough serves reads: open accounting then counts file sizes at
	// open. Never set in "bytes" mode.
	passthrough atomic.Bool
	// pages, if set, is the prefetch helper whose reads are not counted.
	pages *pageReader
}

// newLayerTree takes the already opened directory dir (the Source's, never
// resolved again by path) as the root of a layer and returns its root
// node. tree.rootfd is a duplicate of dir's descriptor, owned by the
// caller; dir stays the caller's too.
func newLayerTree(dir *os.File, layer digest.Digest, acct *account, c *cache.Attrs) (*layerTree, *node, error) {
	fd, err := dupFile(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("layer root %s: %w", dir.Name(), err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("stat layer root %s: %w", dir.Name(), err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("layer root %s is not a directory", dir.Name())
	}
	tree := &layerTree{layer: layer, rootfd: fd, rootDev: st.Dev, rootIno: st.Ino, acct: acct, cache: c}
	opaque := exists(fd, opaqueMarker)
	root := &node{tree: tree, attr: attrFromStat(&st, st.Dev), opaque: opaque, dropWhiteouts: opaque}
	return tree, root, nil
}

// node is one presented entry. Its attributes are read once, when it is
// looked up: the layer is immutable.
type node struct {
	fs.Inode
	tree *layerTree
	rel  string // presented path relative to the layer root; "" for the root
	attr cache.Attr
	// whiteout: synthesised from a ".wh.<name>" marker, no backing file.
	whiteout bool
	// opaque: the directory holds ".wh..wh..opq".
	opaque bool
	// dropWhiteouts: whiteouts in this directory are dropped, because it or
	// an ancestor is opaque.
	dropWhiteouts bool
	// listing is the translated listing of a directory, kept once read:
	// handle-less READDIRs (see skippedRequests) come in batches, each through a
	// new handle; and a lookup of a name it lacks is answered at once.
	listing atomic.Pointer[dirListing]
}

// dirListing is a directory's translated listing, in the backing order,
// and the set of its names.
type dirListing struct {
	ents  []presented
	names map[string]struct{}
}

func newDirListing(ents []presented) *dirListing {
	l := &dirListing{ents: ents, names: make(map[string]struct{}, len(ents))}
	for _, e := range ents {
		l.names[e.name] = struct{}{}
	}
	return l
}

var _ = (fs.InodeEmbedder)((*node)(nil))

// backing returns the directory (relative to the root) and the name of the
// node's backing entry.
func (n *node) backing() (dir, name string) {
	dir, name = path.Split(n.rel)
	if len(dir) > 0 {
		dir = dir[:len(dir)-1]
	}
	if n.whiteout {
		name = whiteoutPrefix + name
	}
	return dir, name
}

func (n *node) isDir() bool { return n.attr.Mode&sIFMT == sIFDIR }

var _ = (fs.NodeLookuper)((*node)(nil))

// Lookup finds name in the directory n, from the cache or the backing tree.
// A lookup of the prefetch page reader is not counted.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !n.tree.pages.fromReader(ctx) {
		n.tree.acct.begin(&n.tree.acct.lookups)
	}
	return n.lookupIn(ctx, -1, name, out)
}

// lookupIn is Lookup with an optional open descriptor of n's backing
// directory (-1: open one if the cache misses).
func (n *node) lookupIn(ctx context.Context, dirfd int, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	a := n.tree.acct
	// An absent name the prefetch page reader looked up is not counted.
	missing := a.missing
	if n.tree.pages.fromReader(ctx) {
		missing = func(errno syscall.Errno) syscall.Errno { return errno }
	}
	if !presentable(name, n.rel == "") {
		return nil, missing(syscall.ENOENT)
	}
	l := n.listing.Load()
	if l != nil {
		if _, ok := l.names[name]; !ok {
			// The directory was listed and the layer never changes: a
			// name it lacks is absent. No path to resolve, no stat: the
			// negative lookups overlayfs makes in every layer that
			// shares a directory are most of a cold start's requests.
			return nil, missing(syscall.ENOENT)
		}
	}
	rel := path.Join(n.rel, name)
	e, errno := n.entry(dirfd, name, rel)
	if errno != 0 {
		return nil, a.fail(errno)
	}
	if e.Negative {
		if l != nil {
			// Listed, yet gone: the layer changed under the mount (it
			// was removed from the store).
			return nil, a.fail(syscall.ENOENT)
		}
		return nil, missing(syscall.ENOENT)
	}
	child := &node{
		tree:          n.tree,
		rel:           rel,
		attr:          e.Attr,
		whiteout:      e.Whiteout,
		opaque:        e.Opaque,
		dropWhiteouts: e.Opaque || n.dropWhiteouts,
	}
	toFuse(&e.Attr, &out.Attr)
	return n.NewInode(ctx, child, fs.StableAttr{Mode: e.Attr.Mode & sIFMT, Ino: e.Attr.Ino}), 0
}

// entry returns the presented entry for name in n, from the cache or by
// statting the backing tree; absent names give a negative entry.
func (n *node) entry(dirfd int, name, rel string) (cache.Entry, syscall.Errno) {
	tree := n.tree
	if e, ok := tree.cache.Get(tree.layer, rel); ok {
		tree.acct.cacheHits.Add(1)
		return e, 0
	}
	tree.acct.cacheMisses.Add(1)
	if dirfd < 0 {
		fd, err := openDir(tree.rootfd, n.rel)
		if err != nil {
			return cache.Entry{}, fs.ToErrno(err)
		}
		defer closeDir(tree.rootfd, fd)
		dirfd = fd
	}
	e, errno := tree.stat(dirfd, name, n.dropWhiteouts)
	if errno == 0 {
		tree.cache.Add(tree.layer, rel, e)
	}
	return e, errno
}

// stat translates the backing entry name of dirfd: the entry itself, else
// its whiteout marker (unless whiteouts are dropped here), else a negative
// entry. Other errors are returned and not cached.
func (tree *layerTree) stat(dirfd int, name string, dropWhiteouts bool) (cache.Entry, syscall.Errno) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil {
		e := cache.Entry{Attr: attrFromStat(&st, tree.rootDev)}
		if st.Mode&sIFMT == sIFDIR {
			e.Opaque = hasOpaqueMarker(dirfd, name)
		}
		return e, 0
	}
	if err != unix.ENOENT {
		return cache.Entry{}, fs.ToErrno(err)
	}
	if !dropWhiteouts {
		err = unix.Fstatat(dirfd, whiteoutPrefix+name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&sIFMT == sIFREG {
			return cache.Entry{Attr: whiteoutAttr(attrFromStat(&st, tree.rootDev)), Whiteout: true}, 0
		}
		if err != nil && err != unix.ENOENT && err != unix.ENAMETOOLONG {
			return cache.Entry{}, fs.ToErrno(err)
		}
	}
	if dirGone(dirfd) {
		// Not an absent name: the directory itself was removed from the
		// store under the mount (the layer was deleted).
		return cache.Entry{}, syscall.ENOENT
	}
	return cache.Entry{Negative: true}, 0
}

// dirGone reports whether the directory open at dirfd was removed: its
// link count is 0, or the store no longer answers for it (a CVMFS client
// answers ENOENT for a directory of a catalog it dropped).
func dirGone(dirfd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return err == unix.ENOENT || err == unix.ESTALE
	}
	return st.Nlink == 0
}

// hasOpaqueMarker reports whether directory name of dirfd holds the opaque
// marker, resolving beneath dirfd (name is not followed if it became a
// symlink).
func hasOpaqueMarker(dirfd int, name string) bool {
	fd, err := beneath.Open(dirfd, name+"/"+opaqueMarker, unix.O_PATH|unix.O_NOFOLLOW)
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}

var _ = (fs.NodeGetattrer)((*node)(nil))

// Getattr answers from the attributes read at lookup; one of the prefetch
// page reader is not counted.
func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !n.tree.pages.fromReader(ctx) {
		n.tree.acct.begin(&n.tree.acct.getattrs)
	}
	toFuse(&n.attr, &out.Attr)
	return 0
}

var _ = (fs.NodeReadlinker)((*node)(nil))

// Readlink returns the target of a symlink verbatim; it is never resolved
// here.
func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	a := n.tree.acct.begin(&n.tree.acct.readlinks)
	if n.attr.Mode&sIFMT != sIFLNK {
		return nil, a.fail(syscall.EINVAL)
	}
	dir, name := n.backing()
	dirfd, err := openDir(n.tree.rootfd, dir)
	if err != nil {
		return nil, a.fail(fs.ToErrno(err))
	}
	defer closeDir(n.tree.rootfd, dirfd)
	for size := max(int(n.attr.Size)+1, 256); ; size *= 2 {
		buf := make([]byte, size)
		l, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, a.fail(fs.ToErrno(err))
		}
		if l < size {
			return buf[:l], 0
		}
	}
}

var _ = (fs.NodeStatfser)((*node)(nil))

// Statfs reports the backing filesystem of the layer.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(n.tree.rootfd, &st); err != nil {
		return n.tree.acct.fail(fs.ToErrno(err))
	}
	out.FromStatfsT(&st)
	return 0
}

// dupFile returns a close-on-exec duplicate of f's descriptor.
func dupFile(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := rc.Control(func(raw uintptr) {
		fd, err = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	return fd, err
}
