//go:build linux

package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestListenSocketModeAtCreation: the socket is 0600 the moment bind(2)
// creates it, whatever the process umask, and the umask is restored.
func TestListenSocketModeAtCreation(t *testing.T) {
	old := syscall.Umask(0) // the laxest umask: a chmod after listen would leave a 0777 window
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "run", "s.sock")
	var atBind os.FileMode
	l, err := listenWith(path, func(p string) (net.Listener, error) {
		l, err := net.Listen("unix", p)
		if err == nil {
			fi, serr := os.Lstat(p)
			if serr != nil {
				t.Error(serr)
			} else {
				atBind = fi.Mode().Perm()
			}
		}
		return l, err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if atBind != 0o600 {
		t.Errorf("socket mode right after bind = %v, want 0600", atBind)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode after listen = %v, %v", fi.Mode(), err)
	}
	if got := syscall.Umask(0); got != 0 {
		t.Errorf("umask after listen = %#o, want it restored to 0", got)
	}
}

// TestListenRefusesNonSocket: a regular file at the socket path is never
// removed; a stale socket is replaced; a live one is reported.
func TestListenRefusesNonSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "data")
	if err := os.WriteFile(file, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if l, err := listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("listen on a regular file = %v, want a \"not a socket\" error", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Fatalf("the file at the socket path was changed: %q, %v", b, err)
	}

	sock := filepath.Join(dir, "s.sock")
	l, err := listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listen(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("listen on a live socket = %v, want \"in use\"", err)
	}
	// A stale socket: left by a process that did not remove it.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l, err = listen(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l.Close()
}
