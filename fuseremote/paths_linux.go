//go:build linux

package fuseremote

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// maxIDLen bounds a snapshot id; the snapshotter's are decimal numbers.
const maxIDLen = 64

// resolve returns the mountpoint mp, which must be exactly
// <root>/snapshots/<id>/fs, with root's symlinks resolved. It refuses
// (errdefs.ErrInvalidArgument) a relative or unclean path, any other shape,
// an id that is not a plain name, and a symlink at snapshots or <id>. It
// does not look at fs itself: when a layer is mounted there, that would be
// a syscall through the mount.
func (s *Server) resolve(mp string) (string, error) {
	refuse := func(why string) error {
		return fmt.Errorf("mountpoint %q refused: %s; want %s: %w",
			mp, why, filepath.Join(s.root, "snapshots", "<id>", "fs"), errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(mp) {
		return "", refuse("not an absolute path")
	}
	if filepath.Clean(mp) != mp {
		return "", refuse("not a clean path")
	}
	var rel string
	var ok bool
	for _, root := range []string{s.root, s.real} {
		if rel, ok = strings.CutPrefix(mp, filepath.Join(root, "snapshots")+"/"); ok {
			break
		}
	}
	if !ok {
		return "", refuse("not under the snapshotter's root")
	}
	id, rest, _ := strings.Cut(rel, "/")
	if rest != "fs" {
		return "", refuse("not a snapshot's fs directory")
	}
	if !validID(id) {
		return "", refuse("snapshot id is not a plain name")
	}
	want := filepath.Join(s.real, "snapshots", id)
	got, err := filepath.EvalSymlinks(filepath.Dir(mp))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("mountpoint %q: %w: %w", mp, err, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("mountpoint %q: %w", mp, err)
	}
	if got != want {
		return "", refuse(fmt.Sprintf("resolves to %s, a symlink is on the way", got))
	}
	return filepath.Join(want, "fs"), nil
}

// validID reports whether id is a plain path component: letters, digits,
// '_' and '-', not starting with '-'.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen || id[0] == '-' {
		return false
	}
	for _, r := range id {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// checkMountDir reports whether path, not mounted by this server, can take
// a new mount: nothing mounted there (checked in the mount table, never
// through a mount) and a real directory, not a symlink.
func checkMountDir(path string) error {
	mounted, err := mountutil.IsMounted(path)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("something this server did not mount is mounted there: %w", errdefs.ErrAlreadyExists)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("not a directory (mode %s): %w", fi.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	return nil
}
