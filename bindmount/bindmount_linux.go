//go:build linux

package bindmount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// Source opens a layer's directory; *ducc.Repo satisfies it. OpenLayer
// returns the directory itself (an O_PATH descriptor will do), checked and
// resolved once: the Mounter bind-mounts that very directory and never
// re-resolves a path that could meanwhile be swapped for a symlink. The
// Mounter closes it.
type Source interface {
	OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error)
}

// Mounter bind-mounts layers read-only. It holds no state and is safe for
// concurrent use.
type Mounter struct {
	src Source
}

// New returns a Mounter over src.
func New(src Source) *Mounter {
	return &Mounter{src: src}
}

// Mount bind-mounts the layer's directory read-only at mountpoint. It
// returns the Source's error (ErrNotFound, ErrInvalidArgument for a layer
// reached through a symlink, ErrUnavailable) when the layer cannot be
// opened, and leaves mountpoint unmounted on any error.
func (m *Mounter) Mount(ctx context.Context, mountpoint string, layer digest.Digest) error {
	dir, err := m.src.OpenLayer(ctx, layer)
	if err != nil {
		return fmt.Errorf("failed to look up layer %s: %w", layer, err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
		return fmt.Errorf("failed to stat layer %s: %w", layer, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("layer %s: %s is not a directory: %w", layer, dir.Name(), errdefs.ErrNotFound)
	}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(dir.Fd()), &sfs); err != nil {
		return fmt.Errorf("failed to statfs layer %s: %w", layer, err)
	}
	// The source is the open directory, through its /proc/self/fd magic
	// link: the kernel binds exactly what was opened, not a path.
	src := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd()))
	if err := unix.Mount(src, mountpoint, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("failed to bind-mount layer %s (%s): %w", layer, dir.Name(), err)
	}
	// A bind mount ignores MS_RDONLY on creation: remount to make it so.
	// The remount sets the mount's flags to exactly those given: the store
	// mount's nosuid, nodev, noexec and atime flags are passed along, or it
	// would clear them (and, in a user namespace, fail on locked ones).
	if err := unix.Mount("", mountpoint, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|mountFlags(sfs.Flags), ""); err != nil {
		if uerr := mountutil.Unmount(mountpoint); uerr != nil {
			return fmt.Errorf("failed to make layer %s read-only: %w (unmount: %v)", layer, err, uerr)
		}
		return fmt.Errorf("failed to make layer %s read-only: %w", layer, err)
	}
	return nil
}

// mountFlags returns the MS_ flags of the per-mount ST_ flags of statfs.
func mountFlags(st int64) uintptr {
	var ms uintptr
	for _, f := range []struct {
		st int64
		ms uintptr
	}{
		{unix.ST_NOSUID, unix.MS_NOSUID},
		{unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if st&f.st != 0 {
			ms |= f.ms
		}
	}
	return ms
}

// Check reports whether mountpoint is still a mount that answers: its
// mount id (statx STATX_MNT_ID) must differ from its parent directory's,
// which also holds when the layer store sits on the same filesystem. The
// stat runs under ctx because the layer store may hang.
func (m *Mounter) Check(ctx context.Context, mountpoint string) error {
	err := bounded.Do(ctx, "layer mount "+mountpoint, func() error {
		id, err := mountID(mountpoint)
		if err != nil {
			return err
		}
		pid, err := mountID(filepath.Dir(mountpoint))
		if err != nil {
			return err
		}
		if id == pid {
			return errors.New("not mounted")
		}
		return nil
	})
	switch {
	case err == nil:
		return nil
	case errdefs.IsUnavailable(err):
		return err
	default:
		return fmt.Errorf("layer mount %s: %v: %w", mountpoint, err, errdefs.ErrUnavailable)
	}
}

func mountID(path string) (uint64, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_STATX_SYNC_AS_STAT, unix.STATX_MNT_ID, &stx); err != nil {
		return 0, err
	}
	if stx.Mask&unix.STATX_MNT_ID == 0 {
		return 0, errors.New("kernel does not report mount ids")
	}
	return stx.Mnt_id, nil
}

// Unmount removes the bind mount: plainly, then lazily if busy; never
// MNT_FORCE, which on a CVMFS client could unmount the repository itself.
func (m *Mounter) Unmount(ctx context.Context, mountpoint string) error {
	if _, err := os.Lstat(mountpoint); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return mountutil.Unmount(mountpoint)
}
