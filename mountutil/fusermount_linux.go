//go:build linux

package mountutil

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// fusermountUnmount unmounts a FUSE mount that fusermount3 made for this
// unprivileged user (umount2 answers EPERM to anyone but root): fusermount3
// -u, then -u -z (lazy) if the mount is busy or its server is gone.
// fusermount3 itself refuses what is not a FUSE mount of this user's, and
// that refusal is an error here unless nothing is mounted at path.
// cause is umount2's error, kept in the returned one.
func fusermountUnmount(path string, cause error) error {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		if bin, err = exec.LookPath("fusermount"); err != nil {
			return fmt.Errorf("unmount %s: %w (and no fusermount3 to ask)", path, cause)
		}
	}
	out, err := exec.Command(bin, "-u", "--", path).CombinedOutput()
	if err == nil {
		return nil
	}
	if msg := string(out); strings.Contains(msg, "not found in") || strings.Contains(msg, "not mounted") {
		// fusermount3 says so of anything that is not this user's FUSE
		// mount, mounted or not: only the mount table tells.
		if mounted, merr := IsMounted(path); merr != nil || mounted {
			return fmt.Errorf("unmount %s: %w; %s -u: %s (the mount is not this user's)", path, errors.Join(cause, merr), bin, strings.TrimSpace(msg))
		}
		return nil
	}
	lazy, lerr := exec.Command(bin, "-u", "-z", "--", path).CombinedOutput()
	if lerr == nil {
		return nil
	}
	return fmt.Errorf("unmount %s: %w; %s -u: %s; -u -z: %s", path, errors.Join(cause, lerr), bin,
		strings.TrimSpace(string(out)), strings.TrimSpace(string(lazy)))
}
