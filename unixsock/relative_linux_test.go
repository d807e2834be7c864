//go:build linux

package unixsock

import (
	"os"
	"path/filepath"
	"testing"
)

// TestListenRelative: a relative path is taken from the working directory,
// and Close still removes the socket after the directory changes.
func TestListenRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	l, err := Listen(filepath.Join("run", "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "s.sock")
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket at %s: %v, %v", sock, fi, err)
	}
	t.Chdir(t.TempDir())
	l.Close()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after Close: %v", err)
	}
}
