//go:build linux

package fuseremote

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/atomicfile"
)

// maxLogSize bounds the FUSE server's log, which outlives daemon restarts
// (as the server does) and would otherwise grow for as long as the root is
// used.
const maxLogSize = 16 << 20

// boundLog cuts the log at path when it is larger than maxLogSize: its
// last quarter (from a line start) replaces path+".1" (atomicfile.Write),
// and the log is truncated in place. The server writes to it with
// O_APPEND, so a running server goes on at the new end rather than leaving
// a hole. A missing log is no error.
func boundLog(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() <= maxLogSize {
		return err
	}
	tail := make([]byte, maxLogSize/4)
	n, err := f.ReadAt(tail, fi.Size()-int64(len(tail)))
	if err != nil && err != io.EOF {
		return err
	}
	tail = tail[:n]
	if i := bytes.IndexByte(tail, '\n'); i >= 0 {
		tail = tail[i+1:]
	}
	if err := atomicfile.Write(path+".1", tail, 0o600); err != nil {
		return err
	}
	return f.Truncate(0)
}
