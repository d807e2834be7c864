//go:build linux

package mountutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mount is one entry of /proc/self/mountinfo that mountutil cares about.
type Mount struct {
	Mountpoint string
	FSType     string
	Source     string
	// Major and Minor are the device numbers of the mounted filesystem
	// (st_dev of the files in it), read from mountinfo so that callers
	// need not stat through the mount.
	Major, Minor int
}

// Under returns the mounts at dir or below it, deepest first, so that they
// can be unmounted in order.
func Under(dir string) ([]Mount, error) {
	dir = filepath.Clean(dir)
	infos, err := mountinfo.GetMounts(func(info *mountinfo.Info) (skip, stop bool) {
		return !(info.Mountpoint == dir || strings.HasPrefix(info.Mountpoint, dir+"/")), false
	})
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	out := make([]Mount, 0, len(infos))
	for _, in := range infos {
		out = append(out, Mount{Mountpoint: in.Mountpoint, FSType: in.FSType, Source: in.Source, Major: in.Major, Minor: in.Minor})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Mountpoint) > len(out[j].Mountpoint) })
	return out, nil
}

// IsMounted reports whether path is itself a mountpoint; false, without
// an error, when path does not exist. Its cost does not grow with the
// number of mounts: it resolves path's last component in its parent
// directory with openat2(RESOLVE_NO_XDEV), which fails with EXDEV where a
// mount covers it, without making a single call into the mounted
// filesystem (a dead or stuck FUSE server cannot hang it). A symlink at
// path is not followed. Kernels without openat2 (before 5.6) get the
// mount table instead.
func IsMounted(path string) (bool, error) {
	mounted, err := isMountedOpenat2(path)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// No openat2, or a seccomp filter that refuses it.
		return isMountedMountinfo(path)
	}
	return mounted, err
}

func isMountedOpenat2(path string) (bool, error) {
	clean := filepath.Clean(path)
	parent, name := filepath.Split(clean)
	if name == "" { // "/"
		return true, nil
	}
	if parent == "" {
		parent = "."
	}
	dirfd, err := unix.Open(parent, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return false, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "open", Path: parent, Err: err}
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_XDEV,
	})
	switch {
	case err == nil:
		unix.Close(fd)
		return false, nil
	case errors.Is(err, unix.EXDEV):
		return true, nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return false, nil
	default:
		return false, &os.PathError{Op: "openat2", Path: clean, Err: err}
	}
}

// isMountedMountinfo is IsMounted from the mount table: its cost grows
// with the number of mounts.
func isMountedMountinfo(path string) (bool, error) {
	ms, err := Under(path)
	if err != nil {
		return false, err
	}
	clean := filepath.Clean(path)
	for _, m := range ms {
		if m.Mountpoint == clean {
			return true, nil
		}
	}
	return false, nil
}

// HasMountsUnder reports whether anything is mounted at dir or below it.
// Callers check it before removing a directory tree.
func HasMountsUnder(dir string) (bool, error) {
	ms, err := Under(dir)
	return len(ms) > 0, err
}

// Unmount unmounts path: a plain unmount, then a lazy one (MNT_DETACH) if the
// mount is busy or its server is gone. Never MNT_FORCE. A path that is not
// mounted (EINVAL) or does not exist (ENOENT) is not an error. A process
// that may not unmount (EPERM: not root, as a rootless daemon) asks
// fusermount3, which unmounts the FUSE mounts it made for this user.
func Unmount(path string) error {
	for {
		err := unix.Unmount(path, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EPERM):
			return fusermountUnmount(path, err)
		case errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTCONN), errors.Is(err, unix.EIO):
			if derr := unix.Unmount(path, unix.MNT_DETACH); derr != nil && !errors.Is(derr, unix.EINVAL) {
				return fmt.Errorf("lazy unmount %s after %v: %w", path, err, derr)
			}
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
}

// UnmountAll unmounts everything at dir or below it, deepest first, and
// returns the first error after trying them all.
func UnmountAll(dir string) error {
	ms, err := Under(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if err := Unmount(m.Mountpoint); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
