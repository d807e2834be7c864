//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// umaskMu serialises the umask changes of listen. The umask belongs to the
// process, not to a goroutine, so this lock is process-wide too.
var umaskMu sync.Mutex

// listen creates the unix socket at path (parent dir created 0711) for the
// daemon's gRPC API, its admin endpoints and the separate FUSE server. The
// socket is 0600 from the moment it exists: it is created under umask
// 0177, not chmod'ed afterwards, so no other user can connect in between.
// (Files other goroutines create meanwhile get at most stricter modes.)
//
// A stale socket (nothing accepts on it) from a previous run is replaced.
// A live socket, or anything that is not a socket, is left alone and
// reported: the path may be a typo pointing at someone's file.
func listen(path string) (net.Listener, error) {
	return listenWith(path, func(p string) (net.Listener, error) { return net.Listen("unix", p) })
}

// listenWith is listen with the bind step given, for tests.
func listenWith(path string, bind func(string) (net.Listener, error)) (net.Listener, error) {
	if path == "" {
		return nil, errors.New("empty socket path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket (%v); refusing to replace it", path, fi.Mode().Type())
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by another process", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	umaskMu.Lock()
	old := syscall.Umask(0o177)
	l, err := bind(path)
	syscall.Umask(old)
	umaskMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return l, nil
}
