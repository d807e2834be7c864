//go:build linux

package ducc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/smallfile"
)

// Paths inside the repository are resolved beneath its root by
// beneath.Open: a symlink anywhere in .layers/<xx>/<hex>/layerfs (or in a
// metadata path) is an error, never a way out of the repository. The root
// itself may be reached through symlinks: it is configuration, not
// repository content.

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
		rootfd, err := r.openRoot()
		if err != nil {
			return nil, r.pathError(rel, err)
		}
		defer unix.Close(rootfd)
		b, err := smallfile.ReadBeneath(rootfd, rel, maxMetadataFile)
		if errors.Is(err, smallfile.ErrNotRegular) || errors.Is(err, smallfile.ErrTooLarge) {
			return nil, fmt.Errorf("%s: %w: %w", r.root, err, errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return nil, r.pathError(rel, err)
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

// openRoot opens the repository root as an O_PATH descriptor, following
// symlinks: the root is configuration, not repository content.
func (r *Repo) openRoot() (int, error) {
	return unix.Open(r.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// openBeneath opens the clean relative path rel beneath the repository
// root as an O_PATH descriptor, following no symlink (a trailing one
// included: ELOOP); dir requires a directory.
func (r *Repo) openBeneath(rel string, dir bool) (int, error) {
	rootfd, err := r.openRoot()
	if err != nil {
		return -1, err
	}
	defer unix.Close(rootfd)
	flags := unix.O_PATH
	if dir {
		flags |= unix.O_DIRECTORY
	}
	return beneath.Open(rootfd, rel, flags)
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
