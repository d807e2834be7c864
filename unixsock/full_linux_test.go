//go:build linux

package unixsock

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestListenFullFilesystem: on a filesystem with no free block, where no
// directory can be made, Listen still creates a 0600 socket, in a private
// directory (bound in place) and in a shared one whose umask leaves no
// window for others to connect.
func TestListenFullFilesystem(t *testing.T) {
	var private string
	root := testutil.FullFS(t, func(root string) {
		private = filepath.Join(root, "private")
		if err := os.Mkdir(private, 0o700); err != nil {
			t.Fatal(err)
		}
	})
	for _, dir := range []string{private, root} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			sock := filepath.Join(dir, "s.sock")
			l, err := Listen(sock)
			if err != nil {
				t.Fatalf("Listen on a full filesystem: %v", err)
			}
			defer l.Close()
			fi, err := os.Lstat(sock)
			if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
				t.Fatalf("socket = %v, %v; want a 0600 socket", fi.Mode(), err)
			}
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		})
	}
	t.Run("permissive umask", func(t *testing.T) {
		old := unix.Umask(0)
		defer unix.Umask(old)
		sock := filepath.Join(root, "open.sock")
		if l, err := Listen(sock); !errors.Is(err, unix.ENOSPC) {
			if l != nil {
				l.Close()
			}
			t.Fatalf("Listen in a shared directory with umask 0 on a full filesystem = %v, want ENOSPC", err)
		}
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Fatalf("a socket was left at %s: %v", sock, err)
		}
	})
}
