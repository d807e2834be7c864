//go:build linux

package fusefs

import (
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

// Every backing path is resolved relative to the layer root's descriptor
// by beneath.Open: a symlink or ".." in the layer can never lead a lookup,
// open or getxattr out of the layer, even if the tree changes underneath.
// Symlink targets are only ever returned by readlink, for the kernel to
// resolve inside the container's root.

// openBacking opens the regular file rel beneath rootfd for reading, as a
// plain blocking open: the descriptor of a file handle, which passthrough
// and later reads use. See openBackingRead.
func openBacking(rootfd int, rel string) (int, error) {
	fd, err := openBackingRead(rootfd, rel)
	if err != nil {
		return -1, err
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_RDONLY); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// openBackingRead opens the regular file rel beneath rootfd for the
// daemon's own reads. The tree may have changed since the lookup that said
// it was a regular file: O_NONBLOCK keeps a FIFO put there from blocking
// the open (for a writer that never comes), and whatever is not a regular
// file once opened (a FIFO, a device node the daemon would open as root)
// is closed unread and answered EIO. O_NONBLOCK stays set: it changes
// nothing for reads of a regular file, and clearing it would cost every
// READ one more system call.
func openBackingRead(rootfd int, rel string) (int, error) {
	fd, err := beneath.Open(rootfd, rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, unix.EIO
	}
	return fd, nil
}

// openDir opens the directory rel beneath rootfd as an O_PATH descriptor,
// usable as the dirfd of the *at calls. rel "" is the root itself, returned
// as is and not to be closed: see closeDir.
func openDir(rootfd int, rel string) (int, error) {
	if rel == "" {
		return rootfd, nil
	}
	return beneath.Open(rootfd, rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
}

// closeDir closes a descriptor returned by openDir.
func closeDir(rootfd, fd int) {
	if fd != rootfd && fd >= 0 {
		unix.Close(fd)
	}
}

// exists reports whether name exists in dirfd without following a symlink.
func exists(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
}
