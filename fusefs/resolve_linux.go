//go:build linux

package fusefs

import (
	"errors"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Every backing path is resolved relative to the layer root's descriptor
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS): a symlink or ".." in
// the layer can never lead a lookup, open or getxattr out of the layer, even
// if the tree changes underneath. Symlink targets are only ever returned by
// readlink, for the kernel to resolve inside the container's root.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// noOpenat2 is set once openat2 answered ENOSYS (kernels before 5.6, some
// seccomp profiles); resolution then walks one component at a time.
var noOpenat2 atomic.Bool

// openBeneath opens rel (a clean relative path, "" for dirfd itself)
// beneath dirfd, following no symlink on the way. flags get O_CLOEXEC and
// O_NOFOLLOW added, so a trailing symlink is only opened with O_PATH.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	flags |= unix.O_CLOEXEC | unix.O_NOFOLLOW
	// A layer may nest deeper than PATH_MAX (tar names have no such
	// bound, and the kernel walks an overlay's lower one component at a
	// time): such a path is too long for one openat2, so it is walked.
	if !noOpenat2.Load() && len(rel) < unix.PathMax {
		for {
			fd, err := unix.Openat2(dirfd, rel, &unix.OpenHow{Flags: uint64(flags), Resolve: resolveFlags})
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			if !errors.Is(err, unix.ENOSYS) {
				return fd, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	return walkBeneath(dirfd, rel, flags)
}

// walkBeneath is openBeneath without openat2: every intermediate component
// is opened O_PATH|O_DIRECTORY|O_NOFOLLOW, so a symlink fails with ENOTDIR
// or ELOOP instead of being followed; ".." is refused.
func walkBeneath(dirfd int, rel string, flags int) (int, error) {
	parts := strings.Split(rel, "/")
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	for i, p := range parts {
		if p == ".." {
			return -1, unix.EXDEV
		}
		if i == len(parts)-1 {
			return unix.Openat(cur, p, flags, 0)
		}
		next, err := unix.Openat(cur, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = next
	}
	return -1, unix.ENOENT // unreachable: Split returns at least one part
}

// openBacking opens the regular file rel beneath rootfd for reading. The
// tree may have changed since the lookup that said it was a regular file:
// O_NONBLOCK keeps a FIFO put there from blocking the open (for a writer
// that never comes), and whatever is not a regular file once opened (a
// FIFO, a device node the daemon would open as root) is closed unread and
// answered EIO; O_NONBLOCK is then cleared.
func openBacking(rootfd int, rel string) (int, error) {
	fd, err := openBeneath(rootfd, rel, unix.O_RDONLY|unix.O_NONBLOCK)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, unix.EIO
	}
	// Reads (and passthrough) see the file as a plain blocking open.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_RDONLY); err != nil {
		unix.Close(fd)
		return -1, err
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
	return openBeneath(rootfd, rel, unix.O_PATH|unix.O_DIRECTORY)
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
