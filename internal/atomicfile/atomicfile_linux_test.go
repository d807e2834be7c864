//go:build linux

package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// entries lists dir's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"first", "second, longer", ""} {
		if err := Write(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != content {
			t.Fatalf("read back %q, %v; want %q", b, err, content)
		}
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != "f" {
		t.Errorf("directory holds %v, want only f", got)
	}
}

// TestWritePermissions: the file has the mode asked for (less the umask),
// whatever the file it replaces had.
func TestWritePermissions(t *testing.T) {
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, tc := range []struct{ perm, want os.FileMode }{
		{0o644, 0o644},
		{0o600, 0o600},
		{0o666, 0o644},
		{0o640, 0o640},
	} {
		if err := Write(p, []byte("x"), tc.perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.want {
			t.Errorf("perm %v: file mode %v, want %v", tc.perm, fi.Mode(), tc.want)
		}
	}
}

// TestWriteReplacesSymlink: a symlink at the name is replaced, and what
// it pointed to is left alone.
func TestWriteReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(target, []byte("target"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "f")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("after the write: %v, %v; want a regular file", fi, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "target" {
		t.Errorf("the symlink's target was written: %q", b)
	}
}

// TestWriteFails: a failed write leaves the name as it was and no
// temporary file behind.
func TestWriteFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "in"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "d"), []byte("x"), 0o600); err == nil {
		t.Error("replaced a directory")
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != "d" {
		t.Errorf("directory holds %v, want only d", got)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("wrote into a missing directory")
	}
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	for _, name := range []string{"", ".", "..", "d/in", "/etc/passwd", strings.Repeat("n", 250)} {
		if err := WriteAt(dirfd, name, []byte("x"), 0o600); err == nil {
			t.Errorf("WriteAt(%q) wrote", name)
		}
	}
	if got := entries(t, dir); len(got) != 1 || got[0] != "d" {
		t.Errorf("directory holds %v, want only d", got)
	}
}

// TestWriteAtomic: readers that open the file while it is replaced again
// and again read one whole content, never a mix or a truncated one.
func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	contents := [][]byte{bytes.Repeat([]byte("a"), 256<<10), bytes.Repeat([]byte("b"), 128<<10)}
	if err := Write(p, contents[0], 0o600); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if !bytes.Equal(b, contents[0]) && !bytes.Equal(b, contents[1]) {
					t.Errorf("read %d bytes that are neither content", len(b))
					return
				}
			}
		}()
	}
	for i := range 200 {
		if err := Write(p, contents[i%2], 0o600); err != nil {
			t.Error(err)
			break
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestWriteAtOPath: WriteAt takes an O_PATH descriptor of the directory
// and leaves no temporary file.
func TestWriteAtOPath(t *testing.T) {
	dir := t.TempDir()
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirfd)
	if err := WriteAt(dirfd, "f", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "x" {
		t.Errorf("read back %q, %v", b, err)
	}
	for _, name := range entries(t, dir) {
		if strings.HasPrefix(name, TempPrefix) {
			t.Errorf("temporary file %s left", name)
		}
	}
}
