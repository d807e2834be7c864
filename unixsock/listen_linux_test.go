//go:build linux

package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func TestListen(t *testing.T) {
	t.Run("fresh", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "new", "s.sock")
		l, err := Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(sock)
		if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket = %v, %v; want a 0600 socket", fi.Mode(), err)
		}
		if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
			t.Fatalf("created socket dir = %v, %v; want 0700", di.Mode(), err)
		}
		if ents, _ := os.ReadDir(filepath.Dir(sock)); len(ents) != 1 {
			t.Fatalf("left beside the socket: %v", ents)
		}
		l.Close()
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Fatalf("socket left after Close: %v", err)
		}
	})
	t.Run("stale socket replaced", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "s.sock")
		old, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		old.(*net.UnixListener).SetUnlinkOnClose(false)
		old.Close()
		l, err := Listen(sock)
		if err != nil {
			t.Fatalf("Listen over a stale socket: %v", err)
		}
		l.Close()
	})
	t.Run("live socket kept", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "s.sock")
		live, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer live.Close()
		if l, err := Listen(sock); !errdefs.IsAlreadyExists(err) {
			if l != nil {
				l.Close()
			}
			t.Fatalf("Listen over a live socket = %v, want ErrAlreadyExists", err)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("the live socket was disturbed: %v", err)
		}
		c.Close()
	})
	t.Run("not a socket kept", func(t *testing.T) {
		dir := t.TempDir()
		file := filepath.Join(dir, "file")
		if err := os.WriteFile(file, []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		stale := filepath.Join(dir, "stale.sock")
		old, err := net.Listen("unix", stale)
		if err != nil {
			t.Fatal(err)
		}
		old.(*net.UnixListener).SetUnlinkOnClose(false)
		old.Close()
		link := filepath.Join(dir, "link")
		if err := os.Symlink(stale, link); err != nil {
			t.Fatal(err)
		}
		sub := filepath.Join(dir, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{file, link, sub} {
			if l, err := Listen(p); !errdefs.IsInvalidArgument(err) {
				if l != nil {
					l.Close()
				}
				t.Errorf("Listen(%s) = %v, want ErrInvalidArgument", p, err)
			}
		}
		if b, _ := os.ReadFile(file); string(b) != "precious" {
			t.Errorf("the file at the socket path was changed: %q", b)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
			t.Errorf("the symlink at the socket path was changed: %v", err)
		}
		if fi, err := os.Lstat(stale); err != nil || fi.Mode().Type() != os.ModeSocket {
			t.Errorf("the symlink's target was removed: %v", err)
		}
		if _, err := os.Stat(sub); err != nil {
			t.Errorf("the directory at the socket path was removed: %v", err)
		}
	})
}

// TestListenNoModeWindow: even with umask 0, nobody ever sees the socket
// path with a mode wider than 0600 (as between bind and a later chmod) in a
// directory others can enter.
func TestListenNoModeWindow(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	var (
		stop  atomic.Bool
		wide  atomic.Int64
		seen  atomic.Int64
		wg    sync.WaitGroup
		worst atomic.Uint32
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			var st unix.Stat_t
			if unix.Lstat(sock, &st) == nil {
				seen.Add(1)
				if st.Mode&0o077 != 0 {
					wide.Add(1)
					worst.Store(st.Mode & 0o777)
				}
			}
		}
	}()
	for range 500 {
		l, err := Listen(sock)
		if err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		l.Close()
	}
	stop.Store(true)
	wg.Wait()
	if n := wide.Load(); n > 0 {
		t.Fatalf("the socket was seen %d times (of %d) with mode %#o", n, seen.Load(), worst.Load())
	}
	if seen.Load() == 0 {
		t.Log("the poller never saw the socket")
	}
}
