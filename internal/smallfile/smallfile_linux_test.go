//go:build linux

package smallfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// dir makes a directory holding
//
//	file   "0123456789"
//	fifo   FIFO
//	null   character device 1:3 (when the test may make one)
//	sub/   directory
//	link  -> file
//	dlink -> sub
//
// and returns its path and O_PATH descriptor.
func dir(t *testing.T) (string, int) {
	t.Helper()
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "file"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(d, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(d, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = unix.Mknod(filepath.Join(d, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))
	for link, target := range map[string]string{"link": "file", "dlink": "sub"} {
		if err := os.Symlink(target, filepath.Join(d, link)); err != nil {
			t.Fatal(err)
		}
	}
	fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return d, fd
}

// readers are Read and ReadBeneath on the same name.
func readers(d string, fd int) map[string]func(name string, limit int64) ([]byte, error) {
	return map[string]func(string, int64) ([]byte, error){
		"Read":        func(name string, limit int64) ([]byte, error) { return Read(filepath.Join(d, name), limit) },
		"ReadBeneath": func(name string, limit int64) ([]byte, error) { return ReadBeneath(fd, name, limit) },
	}
}

func TestRead(t *testing.T) {
	d, fd := dir(t)
	_, devErr := os.Lstat(filepath.Join(d, "null"))
	for _, tc := range []struct {
		name  string
		limit int64
		want  error // nil: reads "0123456789"
	}{
		{"file", 10, nil},
		{"file", 1 << 20, nil},
		{"file", 9, ErrTooLarge},
		{"file", 0, ErrTooLarge},
		{"missing", 10, fs.ErrNotExist},
		{"link", 10, unix.ELOOP},
		{"sub", 10, ErrNotRegular},
		{"dlink", 10, unix.ELOOP},
		{"fifo", 10, ErrNotRegular},
		{"null", 10, ErrNotRegular},
	} {
		if tc.name == "null" && devErr != nil {
			continue // no device could be made
		}
		for rname, read := range readers(d, fd) {
			done := make(chan struct{})
			var b []byte
			var err error
			go func() { b, err = read(tc.name, tc.limit); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s(%s) blocked", rname, tc.name)
			}
			switch {
			case tc.want == nil && (err != nil || string(b) != "0123456789"):
				t.Errorf("%s(%s, %d) = %q, %v", rname, tc.name, tc.limit, b, err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("%s(%s, %d) = %q, %v; want %v", rname, tc.name, tc.limit, b, err, tc.want)
			}
		}
	}
}

// TestReadBeneathStaysBeneath: ReadBeneath follows no symlink on the way
// and refuses ".." and absolute paths, where Read follows the
// directories of the path it is given.
func TestReadBeneathStaysBeneath(t *testing.T) {
	d, fd := dir(t)
	if err := os.WriteFile(filepath.Join(d, "sub", "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"dlink/f", "../" + filepath.Base(d) + "/file", "sub/../file", filepath.Join(d, "file")} {
		if b, err := ReadBeneath(fd, rel, 10); err == nil {
			t.Errorf("ReadBeneath(%q) = %q", rel, b)
		}
	}
	if b, err := ReadBeneath(fd, "sub/f", 10); err != nil || string(b) != "f" {
		t.Errorf("ReadBeneath(sub/f) = %q, %v", b, err)
	}
	if b, err := Read(filepath.Join(d, "dlink", "f"), 10); err != nil || string(b) != "f" {
		t.Errorf("Read(dlink/f) = %q, %v", b, err)
	}
}

// TestReadGrowing: a file whose size says nothing of what it holds (a
// /proc file says 0) is still cut at the bound.
func TestReadGrowing(t *testing.T) {
	b, err := Read("/proc/self/status", 16)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "grew past") {
		t.Errorf("Read(/proc/self/status, 16) = %q, %v; want ErrTooLarge", b, err)
	}
}
