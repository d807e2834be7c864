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
// store's modes are never changed.
func (r *Repo) prepareStore() error {
	if err := os.MkdirAll(filepath.Dir(r.root), 0o755); err != nil {
		return err
	}
	layers := filepath.Join(r.root, layersDir)
	for _, dir := range []string{r.root, layers} {
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return checkPrivate(layers)
}

// checkPrivate returns nil if no other user can use what lies beneath dir:
// its filesystem is mounted nosuid and nodev, or a directory on its real
// path (dir itself or an ancestor) belongs to the caller and grants no
// search permission to group or others. ACLs are not considered. Otherwise
// it returns an error wrapping errdefs.ErrFailedPrecondition that says how
// to fix the store.
func checkPrivate(dir string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return &os.PathError{Op: "statfs", Path: dir, Err: err}
	}
	if sfs.Flags&unix.ST_NOSUID != 0 && sfs.Flags&unix.ST_NODEV != 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return err
	}
	euid := os.Geteuid()
	for p := real; ; p = filepath.Dir(p) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			return &os.PathError{Op: "stat", Path: p, Err: err}
		}
		if int(st.Uid) == euid && st.Mode&0o011 == 0 {
			return nil
		}
		if p == "/" {
			break
		}
	}
	return fmt.Errorf("layer store %q is reachable by other users and its filesystem is not mounted nosuid,nodev: "+
		"they could run the setuid binaries and open the device nodes of its layers; "+
		"make it private (chmod 0700 %q) or mount it nosuid,nodev: %w", dir, dir, errdefs.ErrFailedPrecondition)
}
