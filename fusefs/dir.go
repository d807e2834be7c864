//go:build linux

package fusefs

import (
	"context"
	"encoding/binary"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

var _ = (fs.NodeOpendirHandler)((*node)(nil))

// OpendirHandle returns a handle that reads the backing directory on first
// use. The kernel caches the listing for good (FOPEN_CACHE_DIR: the layer
// never changes). Once skippedRequests has turned OPENDIR off the kernel no
// longer calls this; skippedRequests opens a handle here for each READDIR
// batch. The listings of the prefetch page reader are not counted.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	quiet := n.tree.pages.fromReader(ctx)
	a := n.tree.acct
	if !quiet {
		a.begin(nil)
	}
	if !n.isDir() {
		return nil, 0, a.fail(syscall.ENOTDIR)
	}
	return &dirHandle{n: n, fd: -1, quiet: quiet}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle is an open directory: its translated listing and the backing
// descriptor, kept for the lookups of READDIRPLUS. go-fuse serialises the
// calls on one handle.
type dirHandle struct {
	n      *node
	fd     int // -1 until loaded
	ents   []presented
	pos    int
	loaded bool
	// quiet is set for a handle of the prefetch page reader: its reads
	// and lookups are not counted.
	quiet bool
}

// load opens the backing directory (for the lookups of READDIRPLUS) and
// takes the node's translated listing, reading it if it is the first.
func (d *dirHandle) load() syscall.Errno {
	if d.loaded {
		return 0
	}
	tree := d.n.tree
	fd, err := beneath.Open(tree.rootfd, d.n.rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return tree.acct.fail(fs.ToErrno(err))
	}
	if l := d.n.listing.Load(); l != nil {
		d.fd, d.ents, d.loaded = fd, l.ents, true
		return 0
	}
	if !d.quiet {
		tree.acct.readdirs.Add(1)
	}
	ents, err := readDirents(fd)
	if err != nil {
		unix.Close(fd)
		return tree.acct.fail(fs.ToErrno(err))
	}
	list, _ := translate(ents, d.n.dropWhiteouts, d.n.rel == "")
	d.n.listing.Store(newDirListing(list))
	d.fd, d.ents, d.loaded = fd, list, true
	return 0
}

var (
	_ = (fs.FileReaddirenter)((*dirHandle)(nil))
	_ = (fs.FileLookuper)((*dirHandle)(nil))
	_ = (fs.FileSeekdirer)((*dirHandle)(nil))
	_ = (fs.FileReleasedirer)((*dirHandle)(nil))
)

// Readdirent returns the next entry, nil at the end.
func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := d.load(); errno != 0 {
		return nil, errno
	}
	if d.pos >= len(d.ents) {
		return nil, 0
	}
	e := d.ents[d.pos]
	d.pos++
	ino := e.ino
	if e.backing != e.name {
		ino ^= whiteoutInoBit
	}
	return &fuse.DirEntry{Name: e.name, Mode: e.typ, Ino: ino, Off: uint64(d.pos)}, 0
}

// Lookup serves the lookups of READDIRPLUS relative to the open directory,
// saving a path resolution per entry.
func (d *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if !d.quiet {
		d.n.tree.acct.lookups.Add(1)
	}
	return d.n.lookupIn(ctx, d.fd, name, out) // d.fd is -1 if not loaded: lookupIn opens the directory
}

// Seekdir moves to an offset returned by Readdirent (0 is the start).
func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := d.load(); errno != 0 {
		return errno
	}
	if off > uint64(len(d.ents)) {
		return syscall.EINVAL
	}
	d.pos = int(off)
	return 0
}

// Releasedir closes the backing descriptor.
func (d *dirHandle) Releasedir(ctx context.Context, flags uint32) {
	if d.fd >= 0 {
		unix.Close(d.fd)
	}
}

// readDirents lists the directory open at fd, "." and ".." included, with
// the types getdents reports (0 where the filesystem gives none).
func readDirents(fd int) ([]dirent, error) {
	var out []dirent
	buf := make([]byte, 32<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		out = parseDirents(buf[:n], out)
	}
}

// parseDirents appends the linux_dirent64 records of b to out:
// ino u64, off s64, reclen u16, type u8, name (NUL-terminated).
func parseDirents(b []byte, out []dirent) []dirent {
	const hdr = 19
	for len(b) >= hdr {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < hdr || reclen > len(b) {
			break
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[hdr:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		out = append(out, dirent{
			name: string(name),
			ino:  binary.NativeEndian.Uint64(rec[0:8]),
			typ:  uint32(rec[18]) << 12, // DT_* is S_IF* >> 12
		})
	}
	return out
}
