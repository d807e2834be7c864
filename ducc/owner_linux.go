//go:build linux

package ducc

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
)

// A CVMFS client with its default CVMFS_CLAIM_OWNERSHIP=yes, running as the
// cvmfs user (as autofs and mount -t cvmfs start it), presents every file
// as owned by itself: served so, every path of a container belongs to that
// user, "/" included, and setuid-root programs become setuid to it. DUCC
// publishes everything root-owned, so a layer root (or .layers) owned by
// anyone else is the sign. Such layers are refused, and so pulled, which
// is always correct; serving them is not.

// ownedRight reports whether a repository directory owned by uid can be
// served by a process running as euid: the repository's files are root's,
// or the serving user's own (a local store it wrote, as a rootless daemon
// or a test does).
func ownedRight(uid uint32, euid int) bool {
	return uid == 0 || int(uid) == euid
}

// ownerError is the error of a repository path owned by uid:gid.
func ownerError(path string, uid, gid uint32) error {
	return fmt.Errorf("%s is owned by %d:%d, not root: the CVMFS client presents every file as its own "+
		"(CVMFS_CLAIM_OWNERSHIP=yes, its default): set CVMFS_CLAIM_OWNERSHIP=no in /etc/cvmfs/default.local "+
		"and remount the repository (docs/cvmfs-client.md); its layers are pulled until then: %w",
		path, uid, gid, errdefs.ErrPermissionDenied)
}

// checkOwner returns ownerError when the directory open at fd (path, for
// the message) is not owned right (see ownedRight).
func checkOwner(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if !ownedRight(st.Uid, os.Geteuid()) {
		return ownerError(path, st.Uid, st.Gid)
	}
	return nil
}

// CheckOwnership returns an error wrapping errdefs.ErrPermissionDenied
// when the repository's .layers directory is not root's (nor the caller's
// own): the CVMFS client claims ownership of every file, and OpenLayer
// then refuses every layer. It returns errdefs.ErrNotFound when there is
// no .layers, and errdefs.ErrUnavailable when the repository does not
// answer before ctx ends.
func (r *Repo) CheckOwnership(ctx context.Context) error {
	return bounded.Do(ctx, filepath.Join(r.root, layersDir), func() error {
		fd, err := r.openBeneath(layersDir, true)
		if err != nil {
			return r.pathError(layersDir, err)
		}
		defer unix.Close(fd)
		return checkOwner(fd, filepath.Join(r.root, layersDir))
	})
}
