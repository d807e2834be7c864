//go:build linux

package fusefs

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// deepLayer makes a layer whose deepest file's path is longer than
// PATH_MAX (4096): 20 directories of 250-byte names, made one level at a
// time through directory descriptors as tar extraction would. It returns
// the layer and the file's path in it.
func deepLayer(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rel []string
	for i := range 20 {
		name := strings.Repeat(string(rune('a'+i)), 250)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
		rel = append(rel, name)
	}
	f, err := unix.Openat(fd, "file", unix.O_WRONLY|unix.O_CREAT, 0o644)
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Write(f, []byte("deep"))
	unix.Close(f)
	p := strings.Join(append(rel, "file"), "/")
	if len(p) <= unix.PathMax {
		t.Fatalf("path of %d bytes is not longer than PATH_MAX", len(p))
	}
	return dir, p
}

// TestPathLongerThanPathMax: a file deeper than PATH_MAX in a layer is
// looked up, listed, opened and read like any other: paths are resolved
// beneath the parent's descriptor, not as one path.
func TestPathLongerThanPathMax(t *testing.T) {
	dir, p := deepLayer(t)
	root, _ := newTestRoot(t, dir)
	parent, errno := lookupPath(t, root, p[:strings.LastIndex(p, "/")])
	if errno != 0 {
		t.Fatalf("lookup of the deepest directory (%d bytes): %v", strings.LastIndex(p, "/"), errno)
	}
	var out fuse.EntryOut
	in, errno := parent.Lookup(context.Background(), "file", &out)
	if errno != 0 {
		t.Fatalf("lookup of a file %d bytes deep: %v", len(p), errno)
	}
	n := in.Operations().(*node)
	fh, _, errno := n.Open(context.Background(), syscall.O_RDONLY)
	if errno != 0 {
		t.Fatalf("open of a file %d bytes deep: %v", len(p), errno)
	}
	defer fh.(*file).Release(context.Background())
	res, errno := fh.(*file).Read(context.Background(), make([]byte, 16), 0)
	if errno != 0 {
		t.Fatalf("read: %v", errno)
	}
	if b, _ := res.Bytes(make([]byte, 16)); string(b) != "deep" {
		t.Errorf("read %q, want %q", b, "deep")
	}
	dh, _, errno := parent.OpendirHandle(context.Background(), 0)
	if errno != 0 {
		t.Fatalf("opendir: %v", errno)
	}
	d := dh.(*dirHandle)
	defer d.Releasedir(context.Background(), 0)
	var names []string
	for {
		e, errno := d.Readdirent(context.Background())
		if errno != 0 {
			t.Fatalf("readdir of a directory %d bytes deep: %v", strings.LastIndex(p, "/"), errno)
		}
		if e == nil {
			break
		}
		if e.Name != "." && e.Name != ".." {
			names = append(names, e.Name)
		}
	}
	if len(names) != 1 || names[0] != "file" {
		t.Errorf("listing %v, want [file]", names)
	}
}
