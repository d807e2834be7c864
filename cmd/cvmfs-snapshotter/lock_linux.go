//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// lockRoot takes the exclusive lock of a daemon on root: flock(2) on
// <root>/lock, held until the returned file is closed (or the process
// exits, however it exits). The holder's pid is written into the file.
//
// Why: two daemons on one root would share one bolt database, whose own
// lock makes the second wait forever, deaf to SIGTERM. The second daemon
// fails at once instead, naming the root and the holder's pid. The lock
// descriptor is close-on-exec, so a FUSE server the daemon starts does not
// inherit it.
func lockRoot(root string) (*os.File, error) {
	path := filepath.Join(root, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			b := make([]byte, 32)
			if n, _ := f.ReadAt(b, 0); n > 0 {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n]))); err == nil && pid > 0 {
					holder = fmt.Sprintf("another process (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("root %s is in use: %s holds %s; is another cvmfs-snapshotter running with --root %s?", root, holder, path, root)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Written only once the lock is ours: a loser never clobbers the pid.
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return f, nil
}
