//go:build linux

package fusefs

import (
	"bytes"
	"context"
	"strconv"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"
)

var _ = (fs.NodeGetxattrer)((*node)(nil))

// Getxattr answers the opaque attributes of an opaque directory itself,
// hides every other overlay attribute, and passes the rest (security
// labels, capabilities) through from the backing entry.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	a := n.lfs.acct.begin(nil)
	if n.whiteout {
		return 0, a.fail(syscall.ENODATA)
	}
	if isOverlayXattr(attr) {
		if n.opaque && isOpaqueXattr(attr) {
			return copyOut(dest, []byte("y"))
		}
		return 0, a.fail(syscall.ENODATA)
	}
	var size int
	errno := n.withBackingPath(func(p string, follow bool) error {
		var err error
		if follow {
			size, err = unix.Getxattr(p, attr, dest)
		} else {
			size, err = unix.Lgetxattr(p, attr, dest)
		}
		return err
	})
	if errno != 0 {
		return 0, a.fail(errno)
	}
	return uint32(size), 0
}

var _ = (fs.NodeListxattrer)((*node)(nil))

// Listxattr lists the backing entry's attributes without the overlay ones,
// plus the opaque attributes of an opaque directory.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	a := n.lfs.acct.begin(nil)
	var list []byte
	if !n.whiteout {
		buf := make([]byte, 64<<10)
		var size int
		errno := n.withBackingPath(func(p string, follow bool) error {
			var err error
			if follow {
				size, err = unix.Listxattr(p, buf)
			} else {
				size, err = unix.Llistxattr(p, buf)
			}
			return err
		})
		if errno != 0 && errno != syscall.ENOTSUP {
			return 0, a.fail(errno)
		}
		for _, name := range bytes.Split(buf[:size], []byte{0}) {
			if len(name) > 0 && !isOverlayXattr(string(name)) {
				list = append(append(list, name...), 0)
			}
		}
	}
	if n.opaque {
		for _, x := range opaqueXattrs {
			list = append(append(list, x...), 0)
		}
	}
	return copyOut(dest, list)
}

// copyOut implements the xattr size protocol: an empty dest asks for the
// size, a short one is ERANGE.
func copyOut(dest, val []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(val)), 0
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}

// withBackingPath calls fn with a path naming the node's backing entry
// through /proc/self/fd, its directory resolved beneath the layer root, so
// that the path-based xattr calls cannot escape the layer. follow tells fn
// to follow the last component (the root, itself a descriptor link).
func (n *node) withBackingPath(fn func(p string, follow bool) error) syscall.Errno {
	rootfd := n.lfs.rootfd
	if n.rel == "" {
		return fs.ToErrno(fn("/proc/self/fd/"+strconv.Itoa(rootfd), true))
	}
	dir, name := n.backing()
	dirfd, err := openDir(rootfd, dir)
	if err != nil {
		return fs.ToErrno(err)
	}
	defer closeDir(rootfd, dirfd)
	return fs.ToErrno(fn("/proc/self/fd/"+strconv.Itoa(dirfd)+"/"+name, false))
}
