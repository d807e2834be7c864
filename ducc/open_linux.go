//go:build linux

package ducc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// Paths inside the repository are resolved beneath its root with
// openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS): a
// symlink anywhere in .layers/<xx>/<hex>/layerfs (or in a metadata path)
// is an error, never a way out of the repository. The root itself may be
// reached through symlinks: it is configuration, not repository content.
const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// OpenLayer opens the layer's layerfs directory as an O_PATH descriptor
// (usable as the dirfd of *at calls, for fstat, or as a bind-mount source
// through /proc/self/fd), resolved beneath the repository root without
// following any symlink. Callers that mount or serve the layer must use it
// rather than Lookup's path, which could be replaced after the check. The
// caller closes the file.
//
// It returns errdefs.ErrNotFound if the layer is absent or a component is
// not a directory, errdefs.ErrInvalidArgument for a malformed digest or a
// component that is a symlink, errdefs.ErrPermissionDenied when the layer
// root is owned by another user than root (or the caller): the CVMFS
// client claims ownership of every file (see checkOwner), and errdefs.ErrUnavailable if the
// repository fails or ctx ends first: an open on a stuck CVMFS client can
// hang for minutes, so it runs in its own goroutine and is abandoned (it
// finishes on its own and closes what it opened) when ctx is done.
func (r *Repo) OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error) {
	rel, err := r.layerRel(layer, layerFSDir)
	if err != nil {
		return nil, err
	}
	return bounded.Call(ctx, filepath.Join(r.root, rel), func() (*os.File, error) {
		fd, err := r.openBeneath(rel, true)
		if err != nil {
			return nil, r.pathError(rel, err)
		}
		if err := checkOwner(fd, filepath.Join(r.root, rel)); err != nil {
			unix.Close(fd)
			return nil, err
		}
		return os.NewFile(uintptr(fd), filepath.Join(r.root, rel)), nil
	})
}

// maxMetadataFile bounds what is read of a metadata file (layers.json,
// origin.json): repository content, so hostile input. DUCC writes a few
// hundred bytes per image.
const maxMetadataFile = 16 << 20

// readFile reads the regular file rel (relative to the root) resolved as
// OpenLayer resolves. Anything but a regular file is refused before it is
// opened for reading (a fifo would block, a device would be opened by
// root), and so is one larger than maxMetadataFile (InvalidArgument).
// Errors are classified as OpenLayer's.
func (r *Repo) readFile(ctx context.Context, rel string) ([]byte, error) {
	type data struct{ b []byte }
	d, err := bounded.Call(ctx, filepath.Join(r.root, rel), func() (*data, error) {
		pfd, err := r.openBeneath(rel, false)
		if err != nil {
			return nil, r.pathError(rel, err)
		}
		defer unix.Close(pfd)
		var st unix.Stat_t
		if err := unix.Fstat(pfd, &st); err != nil {
			return nil, r.pathError(rel, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("%s is not a regular file: %w", filepath.Join(r.root, rel), errdefs.ErrInvalidArgument)
		}
		// Reopen the very inode checked above for reading.
		f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(pfd), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
		if err != nil {
			return nil, r.pathError(rel, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxMetadataFile+1))
		if err != nil {
			return nil, r.pathError(rel, err)
		}
		if len(b) > maxMetadataFile {
			return nil, fmt.Errorf("%s is larger than %d bytes: %w", filepath.Join(r.root, rel), maxMetadataFile, errdefs.ErrInvalidArgument)
		}
		return &data{b}, nil
	})
	if err != nil {
		return nil, err
	}
	return d.b, nil
}

// layerRel returns .layers/<xx>/<hex>[/elem...] for a valid digest.
func (r *Repo) layerRel(layer digest.Digest, elem ...string) (string, error) {
	d, err := layerdigest.Parse(layer.String())
	if err != nil {
		return "", err
	}
	hex := d.Encoded()
	return filepath.Join(append([]string{layersDir, hex[:2], hex}, elem...)...), nil
}

// openBeneath opens the clean relative path rel beneath the repository
// root as an O_PATH descriptor, following no symlink; dir requires a
// directory.
func (r *Repo) openBeneath(rel string, dir bool) (int, error) {
	rootfd, err := unix.Open(r.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootfd)
	// No O_NOFOLLOW: RESOLVE_NO_SYMLINKS refuses a trailing symlink with
	// ELOOP, where O_NOFOLLOW|O_PATH would open the link itself.
	flags := unix.O_PATH | unix.O_CLOEXEC
	if dir {
		flags |= unix.O_DIRECTORY
	}
	for {
		fd, err := unix.Openat2(rootfd, rel, &unix.OpenHow{Flags: uint64(flags), Resolve: resolveFlags})
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOSYS):
			// Kernels before 5.6 and some seccomp profiles.
			return walkBeneath(rootfd, rel, dir)
		}
		return fd, err
	}
}

// walkBeneath is openBeneath without openat2: each component is opened
// O_PATH|O_NOFOLLOW and checked with fstat, so a symlink fails with ELOOP
// and a non-directory parent with ENOTDIR; ".." is refused with EXDEV.
func walkBeneath(dirfd int, rel string, dir bool) (int, error) {
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		if p == ".." {
			return -1, unix.EXDEV
		}
		next, err := unix.Openat(cur, p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		var st unix.Stat_t
		if err := unix.Fstat(next, &st); err != nil {
			unix.Close(next)
			return -1, err
		}
		last := i == len(parts)-1
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			unix.Close(next)
			return -1, unix.ELOOP
		case (!last || dir) && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			unix.Close(next)
			return -1, unix.ENOTDIR
		case last:
			return next, nil
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = next
	}
	return -1, unix.ENOENT // unreachable: Split returns at least one part
}

// pathError classifies an error resolving rel beneath the root.
func (r *Repo) pathError(rel string, err error) error {
	path := filepath.Join(r.root, rel)
	switch {
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%s: %w", path, errdefs.ErrNotFound)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s is not a directory: %w", path, errdefs.ErrNotFound)
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s is or passes through a symlink, refusing to follow it: %w", path, errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("%s: %w: %w", path, err, errdefs.ErrUnavailable)
	}
}
