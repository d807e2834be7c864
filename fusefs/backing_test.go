//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestOpenReplacedBacking: a backing file replaced after its lookup by a
// FIFO (whose open would block for a writer) or a device node is not
// opened as what it has become: Open and a handle-less Read fail at once.
func TestOpenReplacedBacking(t *testing.T) {
	testutil.RequiresRoot(t)
	for _, kind := range []string{"fifo", "device"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, dir, "f", "content")
			root, _ := newTestRoot(t, dir)
			n, errno := lookupPath(t, root, "f")
			if errno != 0 {
				t.Fatal(errno)
			}
			p := filepath.Join(dir, "f")
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			var err error
			if kind == "fifo" {
				err = unix.Mkfifo(p, 0o644)
				// Unblocks an open that waits for a writer.
				t.Cleanup(func() {
					if f, err := os.OpenFile(p, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
						f.Close()
					}
				})
			} else {
				err = unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) // /dev/null
			}
			if err != nil {
				t.Fatal(err)
			}
			for name, call := range map[string]func() syscall.Errno{
				"open": func() syscall.Errno {
					fh, _, errno := n.Open(context.Background(), syscall.O_RDONLY)
					if fh != nil {
						fh.(interface {
							Release(context.Context) syscall.Errno
						}).Release(context.Background())
					}
					return errno
				},
				"read": func() syscall.Errno {
					_, errno := n.Read(context.Background(), nil, make([]byte, 16), 0)
					return errno
				},
			} {
				done := make(chan syscall.Errno, 1)
				go func() { done <- call() }()
				select {
				case errno := <-done:
					if errno != syscall.EIO {
						t.Errorf("%s of a %s that was a regular file at lookup: errno %v, want EIO", name, kind, errno)
					}
				case <-time.After(2 * time.Second):
					t.Errorf("%s of a %s that was a regular file at lookup blocks", name, kind)
				}
			}
		})
	}
}
