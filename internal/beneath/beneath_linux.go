//go:build linux

package beneath

import (
	"errors"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// resolveFlags make openat2 refuse every symlink, magic links (/proc/*/fd)
// included, and every path that would leave the directory.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// noOpenat2 is set once openat2 answered ENOSYS (kernels before 5.6, some
// seccomp profiles); every resolution then walks one component at a time.
var noOpenat2 atomic.Bool

// Open opens rel beneath dirfd with flags (O_CLOEXEC is added) and returns
// the new descriptor, which the caller closes. rel is relative; "" and "."
// are dirfd's directory itself; empty and "." components are allowed, and
// a trailing slash requires a directory, as for open(2).
//
// No symlink is followed: one on the way fails with ELOOP (or ENOTDIR),
// and so does a trailing one unless flags hold both O_PATH and O_NOFOLLOW,
// which open the link itself (for an fstat, or to tell that a name exists).
// A ".." component and an absolute path fail with EXDEV, even when they
// would stay beneath dirfd.
//
// flags are those of an open of an existing file: O_CREAT is not supported
// (the mode is 0). A FIFO or a device is opened like anything else: open
// it with O_PATH and fstat it first, or add O_NONBLOCK and check the type
// before reading.
func Open(dirfd int, rel string, flags int) (int, error) {
	if rel == "" {
		rel = "."
	}
	if rel[0] == '/' || hasDotDot(rel) {
		return -1, unix.EXDEV
	}
	flags |= unix.O_CLOEXEC
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
	return walk(dirfd, rel, flags)
}

// hasDotDot reports whether a component of rel is "..".
func hasDotDot(rel string) bool {
	if !strings.Contains(rel, "..") {
		return false
	}
	for p := range strings.SplitSeq(rel, "/") {
		if p == ".." {
			return true
		}
	}
	return false
}

// walk is Open without openat2, for a relative rel without "..": every
// intermediate component is opened O_PATH|O_DIRECTORY|O_NOFOLLOW and the
// last one with O_NOFOLLOW added, so that no symlink is ever followed; a
// symlink where a directory was needed fails with ELOOP, as with openat2.
func walk(dirfd int, rel string, flags int) (int, error) {
	trailingSlash := strings.HasSuffix(rel, "/")
	rel = strings.TrimRight(rel, "/")
	parts := strings.Split(rel, "/")
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	for i, p := range parts {
		if i == len(parts)-1 {
			return openLast(cur, p, flags, trailingSlash)
		}
		if p == "" {
			continue
		}
		next, err := unix.Openat(cur, p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, symlinkError(cur, p, err)
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = next
	}
	return -1, unix.ENOENT // unreachable: Split returns at least one part
}

// openLast opens the last component name in dirfd as Open does.
func openLast(dirfd int, name string, flags int, dir bool) (int, error) {
	f := flags | unix.O_NOFOLLOW
	if dir {
		f |= unix.O_DIRECTORY
	}
	fd, err := unix.Openat(dirfd, name, f, 0)
	if err != nil {
		return -1, symlinkError(dirfd, name, err)
	}
	if flags&unix.O_PATH != 0 && flags&unix.O_NOFOLLOW == 0 {
		// O_PATH|O_NOFOLLOW opened a trailing symlink itself: the caller
		// did not ask for that.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			unix.Close(fd)
			return -1, unix.ELOOP
		}
	}
	return fd, nil
}

// symlinkError turns the ENOTDIR of an open of name in dirfd with
// O_DIRECTORY|O_NOFOLLOW into ELOOP when name is a symlink.
func symlinkError(dirfd int, name string, err error) error {
	if !errors.Is(err, unix.ENOTDIR) {
		return err
	}
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.ELOOP
	}
	return err
}
