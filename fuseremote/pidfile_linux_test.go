//go:build linux

package fuseremote

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReadPIDFileHostile: a pid file that is a FIFO, a symlink or huge is
// an error, never a wait or a read of something else.
func TestReadPIDFileHostile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid, err := readPIDFile(good); err != nil || pid != 42 {
		t.Fatalf("readPIDFile(good) = %d, %v", pid, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, []byte("42"+strings.Repeat(" ", 1<<20)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, link, huge} {
		if pid, err := readPIDFile(p); err == nil {
			t.Errorf("readPIDFile(%s) = %d, want an error", filepath.Base(p), pid)
		}
	}
}
