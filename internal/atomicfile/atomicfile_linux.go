//go:build linux

package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// TempPrefix starts the names of the temporary files: TempPrefix + name +
// "-" + 12 random hex digits.
const TempPrefix = ".tmp-"

// Write replaces the file path with data, atomically, as WriteAt does in
// path's directory. The directories on the way to path are followed, as
// for any path the caller configured; path's last component is not.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dirfd)
	if err := WriteAt(dirfd, filepath.Base(path), data, perm); err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// WriteAt replaces the file name in the directory dirfd (an O_PATH
// descriptor will do) with data: a new temporary file made with perm (less
// the umask, as os.WriteFile) is written, synced, and renamed over name,
// and the directory is synced. Whatever was at name (a file, a symlink) is
// replaced, not written through; a directory there is an error. On an
// error before the rename, name is as it was and the temporary file is
// removed. name is a single component.
func WriteAt(dirfd int, name string, data []byte, perm os.FileMode) error {
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return &os.PathError{Op: "write", Path: name, Err: unix.EINVAL}
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	tmp := TempPrefix + name + "-" + hex.EncodeToString(suffix[:])
	fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if rerr := unix.Renameat(dirfd, tmp, dirfd, name); rerr != nil {
			err = &os.LinkError{Op: "rename", Old: tmp, New: name, Err: rerr}
		}
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(dirfd)
}

// syncDir makes the rename in dirfd durable. A file system that cannot
// sync a directory (EINVAL) has nothing more to do.
func syncDir(dirfd int) error {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: ".", Err: err}
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EOPNOTSUPP) {
		return &os.PathError{Op: "fsync", Path: ".", Err: err}
	}
	return nil
}
