//go:build linux

package ducc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// prepareStore readies the repository for writing layer trees. Layers keep
// what the image has, as containerd's own unpack does: setuid and setgid
// bits, ownership, device nodes. A host user who can reach such a tree can
// run a setuid-root binary or open a 0666 block device from it, so the
// trees must be out of their reach. Containers are not affected: they see
// the layers through mounts made by root.
//
// prepareStore creates the repository root and its .layers directory with
// mode 0700 when they are missing (umask can only narrow that), and then
// returns an error wrapping errdefs.ErrFailedPrecondition unless the store
// is private or on a nosuid,nodev mount; see checkPrivate. An existing
// store's modes are never changed. shared reports a store that other users
// can reach and write through: each layer tree written there must pass
// checkUnwritable.
func (r *Repo) prepareStore() (shared bool, err error) {
	if err := os.MkdirAll(filepath.Dir(r.root), 0o755); err != nil {
		return false, err
	}
	layers := filepath.Join(r.root, layersDir)
	for _, dir := range []string{r.root, layers} {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, err
		}
	}
	return checkPrivate(layers)
}

// checkPrivate returns nil if no other user can use what lies beneath dir:
// a directory on its real path (dir itself or an ancestor) belongs to the
// caller and grants no search permission to group or others, or its
// filesystem is mounted nosuid and nodev. ACLs are not considered.
// Otherwise it returns an error wrapping errdefs.ErrFailedPrecondition that
// says how to fix the store.
//
// nosuid,nodev only makes the setuid binaries and device nodes of the
// layers harmless to the host users who reach them; those users can still
// write what the trees let them write. shared is true for such a store that
// is not mounted read-only.
func checkPrivate(dir string) (shared bool, err error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return false, &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false, err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return false, err
	}
	euid := os.Geteuid()
	for p := real; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return false, &os.PathError{Op: "stat", Path: p, Err: err}
		}
		if int(st.Uid) == euid && st.Mode&0o011 == 0 {
			return false, nil
		}
		if p == "/" {
			break
		}
	}
	if sfs.Flags&unix.ST_NOSUID != 0 && sfs.Flags&unix.ST_NODEV != 0 {
		return sfs.Flags&unix.ST_RDONLY == 0, nil
	}
	return false, fmt.Errorf("layer store %q is reachable by other users and its filesystem is not mounted nosuid,nodev: "+
		"they could run the setuid binaries and open the device nodes of its layers; "+
		"make it private (chmod 0700 %q) or mount it nosuid,nodev: %w", dir, dir, errdefs.ErrFailedPrecondition)
}

// checkUnwritable returns an error wrapping errdefs.ErrFailedPrecondition
// if a host user other than root and the caller could change the layer tree
// at root once it is in a store they reach (checkPrivate's shared). The
// rule: every entry but a symlink (whose target nobody can change) must
// belong to root or the caller, since an owner can always chmod and write
// its file; and grant no write permission to group or others, which would
// let any member or user rewrite a file or add entries to a directory (a
// 1777 /tmp included). Such a store serves containers layers that host
// users could have rewritten, so the layer is refused rather than fixed:
// a private store (or one mounted read-only) keeps it as the image has it.
func checkUnwritable(root string) error {
	euid := uint32(os.Geteuid())
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		if (st.Uid == 0 || st.Uid == euid) && st.Mode&0o022 == 0 {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		return fmt.Errorf("layer entry %q (uid %d, mode %#o) could be rewritten by host users in a layer store they reach: "+
			"make the store private (chmod 0700) to ingest this layer: %w", rel, st.Uid, st.Mode&0o7777, errdefs.ErrFailedPrecondition)
	})
}
