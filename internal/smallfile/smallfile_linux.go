//go:build linux

package smallfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

var (
	// ErrNotRegular says the file is not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge says the file holds more than the bound.
	ErrTooLarge = errors.New("file larger than allowed")
)

// Read returns the content of the regular file path, of at most limit
// bytes. The last component of path is not followed if it is a symlink
// (ELOOP); the directories on the way are, as for any path the caller
// configured. An error opening path is an *os.PathError (errors.Is(err,
// fs.ErrNotExist) tells a missing file); anything but a regular file
// fails with ErrNotRegular, a file of more than limit bytes (or one that
// grows past it while read) with ErrTooLarge.
func Read(path string, limit int64) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	return read(fd, path, limit)
}

// ReadBeneath is Read for rel resolved beneath dirfd by beneath.Open: no
// symlink is followed anywhere in rel (ELOOP), and ".." or an absolute
// path fails with EXDEV. Errors name rel.
func ReadBeneath(dirfd int, rel string, limit int64) ([]byte, error) {
	fd, err := beneath.Open(dirfd, rel, unix.O_PATH)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	defer unix.Close(fd)
	return read(fd, rel, limit)
}

// read reads the file of the O_PATH descriptor pfd, named name in errors,
// if it is a regular file of at most limit bytes.
func read(pfd int, name string, limit int64) ([]byte, error) {
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "fstat", Path: name, Err: err}
	}
	switch typ := st.Mode & unix.S_IFMT; {
	case typ == unix.S_IFLNK:
		// Only Read's O_PATH|O_NOFOLLOW opens a symlink: what O_NOFOLLOW
		// answers without O_PATH.
		return nil, &os.PathError{Op: "open", Path: name, Err: unix.ELOOP}
	case typ != unix.S_IFREG:
		return nil, fmt.Errorf("%s: %w (mode %#o)", name, ErrNotRegular, typ)
	case st.Size > limit:
		return nil, fmt.Errorf("%s: %w: %d bytes, more than %d", name, ErrTooLarge, st.Size, limit)
	}
	// Reopen the very inode checked above for reading. O_NONBLOCK and
	// O_NOCTTY change nothing for a regular file.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(pfd), os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		// Not %w: a failed reopen is no missing file.
		return nil, fmt.Errorf("reopen %s: %v", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: grew past %d bytes", name, ErrTooLarge, limit)
	}
	return b, nil
}
