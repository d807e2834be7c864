//go:build linux

package fusefs

import (
	"fmt"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// mountKernel mounts a FUSE filesystem at mountpoint with mount(2) and
// returns its /dev/fuse descriptor, for go-fuse's "/dev/fd/N" mountpoint,
// with which go-fuse skips its poll hack (see WithoutSelfAccess).
func mountKernel(mountpoint string, o *fuse.MountOptions, flags uintptr) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return -1, err
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	data := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&unix.S_IFMT),
		fmt.Sprintf("user_id=%d", unix.Geteuid()),
		fmt.Sprintf("group_id=%d", unix.Getegid()),
	}
	maxRead := fmt.Sprintf("max_read=%d", o.MaxWrite)
	if o.AllowOther {
		data = append(data, "allow_other")
	}
	for _, opt := range o.Options {
		switch {
		case opt == "ro":
			flags |= unix.MS_RDONLY
		case strings.HasPrefix(opt, "max_read="):
			maxRead = opt
		default:
			data = append(data, opt)
		}
	}
	data = append(data, maxRead)
	if err := unix.Mount(o.FsName, mountpoint, "fuse."+o.Name, flags, strings.Join(data, ",")); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount fuse at %s: %w", mountpoint, err)
	}
	return fd, nil
}
