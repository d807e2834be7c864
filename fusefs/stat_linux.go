//go:build linux

package fusefs

import (
	"syscall"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

const (
	sIFMT  = syscall.S_IFMT
	sIFCHR = syscall.S_IFCHR
	sIFDIR = syscall.S_IFDIR
	sIFREG = syscall.S_IFREG
	sIFLNK = syscall.S_IFLNK
)

// whiteoutInoBit is flipped in the inode number of a whiteout so that it
// never shares an identity with the file its marker is hardlinked to.
const whiteoutInoBit = 1 << 63

// attrFromStat converts a backing stat to the cached form, its owner as
// processOwner reports it. rootDev is the
// device of the layer root: inode numbers of the root's device are kept as
// they are, others get the device mixed in (as go-fuse's loopback does) so
// that a layer spanning devices keeps unique numbers.
func attrFromStat(st *unix.Stat_t, rootDev uint64) cache.Attr {
	swap := func(d uint64) uint64 { return d<<32 | d>>32 }
	uid, gid := processOwner.apply(st.Uid, st.Gid)
	return cache.Attr{
		Ino:       st.Ino ^ swap(st.Dev) ^ swap(rootDev),
		Size:      uint64(st.Size),
		Blocks:    uint64(st.Blocks),
		Atime:     st.Atim.Sec,
		AtimeNsec: uint32(st.Atim.Nsec),
		Mtime:     st.Mtim.Sec,
		MtimeNsec: uint32(st.Mtim.Nsec),
		Ctime:     st.Ctim.Sec,
		CtimeNsec: uint32(st.Ctim.Nsec),
		Mode:      st.Mode,
		Nlink:     uint32(st.Nlink),
		UID:       uid,
		GID:       gid,
		Rdev:      uint32(st.Rdev),
		Blksize:   uint32(st.Blksize),
	}
}

// whiteoutAttr turns the attributes of a ".wh.<name>" marker into those of
// the overlayfs whiteout it stands for: a character device 0:0 with no
// permission bits (as mknod(S_IFCHR, 0) makes it), the marker's owner and
// times, and an identity of its own.
func whiteoutAttr(marker cache.Attr) cache.Attr {
	a := marker
	a.Ino ^= whiteoutInoBit
	a.Mode = sIFCHR
	a.Size, a.Blocks, a.Rdev, a.Nlink = 0, 0, 0, 1
	return a
}

// toFuse fills a go-fuse attribute from a cached one.
func toFuse(a *cache.Attr, out *fuse.Attr) {
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blocks = a.Blocks
	out.Atime, out.Atimensec = uint64(a.Atime), a.AtimeNsec
	out.Mtime, out.Mtimensec = uint64(a.Mtime), a.MtimeNsec
	out.Ctime, out.Ctimensec = uint64(a.Ctime), a.CtimeNsec
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.UID, a.GID
	out.Rdev = a.Rdev
	out.Blksize = a.Blksize
}
