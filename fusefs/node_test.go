//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// newTestRoot builds the node tree of dir without mounting it, as
// stargz-snapshotter tests its nodes: fs.NewNodeFS wires the bridge, and
// the node methods are called directly.
func newTestRoot(t *testing.T, dir string) (*node, *account) {
	t.Helper()
	c, err := cache.New(128)
	if err != nil {
		t.Fatal(err)
	}
	acct := newAccount(16)
	f, err := openDirPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tree, root, err := newLayerTree(f, testDigest(dir), acct, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(tree.rootfd) })
	fs.NewNodeFS(root, &fs.Options{})
	return root, acct
}

// lookupPath walks rel from n with direct Lookup calls.
func lookupPath(t *testing.T, n *node, rel string) (*node, syscall.Errno) {
	t.Helper()
	for _, name := range strings.Split(rel, "/") {
		var out fuse.EntryOut
		in, errno := n.Lookup(context.Background(), name, &out)
		if errno != 0 {
			return nil, errno
		}
		n = in.Operations().(*node)
		if out.Attr.Mode != n.attr.Mode || out.Attr.Ino != n.attr.Ino {
			t.Errorf("lookup %q: entry attr %v differs from node attr %+v", name, out.Attr, n.attr)
		}
	}
	return n, 0
}

// duccLayer writes a DUCC-style upper layer: /.cvmfscatalog, /.wh.a,
// d/.wh..wh..opq, d/y, d/.wh.z (redundant in an opaque dir), d/e/.wh.w
// (redundant below it), d/e/.cvmfscatalog (the image's own file),
// s -> ../../etc (a symlink leading out).
func duccLayer(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{".cvmfscatalog", ".wh.a", "d/.wh..wh..opq", "d/y", "d/.wh.z", "d/e/.wh.w", "d/e/.cvmfscatalog", "k/.wh.q"} {
		writeFile(t, dir, f, "")
	}
	if err := os.Symlink("../../etc", filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestNodeLookupTranslation(t *testing.T) {
	root, acct := newTestRoot(t, duccLayer(t))
	tests := []struct {
		path     string
		errno    syscall.Errno
		mode     uint32 // file type expected
		whiteout bool
	}{
		{"a", 0, sIFCHR, true},
		{"k/q", 0, sIFCHR, true},
		{".wh.a", syscall.ENOENT, 0, false},
		{".cvmfscatalog", syscall.ENOENT, 0, false},
		{"d/.wh..wh..opq", syscall.ENOENT, 0, false},
		{"d/y", 0, sIFREG, false},
		{"d/z", syscall.ENOENT, 0, false},       // whiteout in an opaque dir: dropped
		{"d/e/w", syscall.ENOENT, 0, false},     // and below it
		{"d/e/.cvmfscatalog", 0, sIFREG, false}, // the image's own file
		{"s", 0, sIFLNK, false},
		{"missing", syscall.ENOENT, 0, false},
		// ".wh." + 255 bytes is too long for the backing tree: still ENOENT.
		{strings.Repeat("m", 255), syscall.ENOENT, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.path[:min(len(tc.path), 20)], func(t *testing.T) {
			n, errno := lookupPath(t, root, tc.path)
			if errno != tc.errno {
				t.Fatalf("lookup %q: errno %v, want %v", tc.path, errno, tc.errno)
			}
			if errno != 0 {
				return
			}
			if n.attr.Mode&sIFMT != tc.mode || n.whiteout != tc.whiteout {
				t.Errorf("lookup %q: mode %o whiteout %v; want type %o whiteout %v", tc.path, n.attr.Mode, n.whiteout, tc.mode, tc.whiteout)
			}
			if tc.whiteout && (n.attr.Rdev != 0 || n.attr.Mode != sIFCHR) {
				t.Errorf("whiteout %q: mode %o rdev %d, want char 0:0 mode 0", tc.path, n.attr.Mode, n.attr.Rdev)
			}
		})
	}
	if acct.lookups.Load() == 0 || acct.cacheMisses.Load() == 0 {
		t.Errorf("lookups not accounted: %d lookups, %d misses", acct.lookups.Load(), acct.cacheMisses.Load())
	}
	// The second walk is answered by the cache.
	hits := acct.cacheHits.Load()
	if _, errno := lookupPath(t, root, "d/y"); errno != 0 || acct.cacheHits.Load() != hits+2 {
		t.Errorf("second lookup: errno %v, cache hits %d -> %d, want +2", errno, hits, acct.cacheHits.Load())
	}
}

func TestNodeOpaqueXattr(t *testing.T) {
	root, _ := newTestRoot(t, duccLayer(t))
	ctx := context.Background()
	d, _ := lookupPath(t, root, "d")
	k, _ := lookupPath(t, root, "k")
	for _, attr := range opaqueXattrs {
		buf := make([]byte, 8)
		n, errno := d.Getxattr(ctx, attr, buf)
		if errno != 0 || string(buf[:n]) != "y" {
			t.Errorf("opaque dir: getxattr %s = %q, %v; want \"y\"", attr, buf[:n], errno)
		}
		if n, errno := d.Getxattr(ctx, attr, nil); errno != 0 || n != 1 {
			t.Errorf("opaque dir: size query for %s = %d, %v", attr, n, errno)
		}
		if _, errno := k.Getxattr(ctx, attr, buf); errno != syscall.ENODATA {
			t.Errorf("plain dir: getxattr %s errno %v, want ENODATA", attr, errno)
		}
	}
	buf := make([]byte, 256)
	n, errno := d.Listxattr(ctx, buf)
	if errno != 0 {
		t.Fatal(errno)
	}
	got := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
	for _, attr := range opaqueXattrs {
		if !slices.Contains(got, attr) {
			t.Errorf("listxattr = %q, missing %s", got, attr)
		}
	}
	if _, errno := d.Listxattr(ctx, buf[:3]); errno != syscall.ERANGE {
		t.Errorf("short listxattr buffer: errno %v, want ERANGE", errno)
	}
}

func TestNodeReaddir(t *testing.T) {
	root, _ := newTestRoot(t, duccLayer(t))
	read := func(n *node) []string {
		fh, _, errno := n.OpendirHandle(context.Background(), 0)
		if errno != 0 {
			t.Fatal(errno)
		}
		d := fh.(*dirHandle)
		defer d.Releasedir(context.Background(), 0)
		var out []string
		for {
			e, errno := d.Readdirent(context.Background())
			if errno != 0 {
				t.Fatal(errno)
			}
			if e == nil {
				break
			}
			if e.Name == "." || e.Name == ".." {
				continue
			}
			if e.Name == "a" && e.Mode != sIFCHR {
				t.Errorf("whiteout listed with mode %o", e.Mode)
			}
			out = append(out, e.Name)
		}
		sort.Strings(out)
		return out
	}
	if got, want := read(root), []string{"a", "d", "k", "s"}; !slices.Equal(got, want) {
		t.Errorf("root lists %q, want %q", got, want)
	}
	d, _ := lookupPath(t, root, "d")
	if got, want := read(d), []string{"e", "y"}; !slices.Equal(got, want) {
		t.Errorf("opaque dir lists %q, want %q", got, want)
	}
	e, _ := lookupPath(t, root, "d/e")
	if got, want := read(e), []string{".cvmfscatalog"}; !slices.Equal(got, want) {
		t.Errorf("dir below opaque lists %q, want %q (the image's own catalog file)", got, want)
	}
}

func TestNodeReadOnly(t *testing.T) {
	dir := duccLayer(t)
	root, acct := newTestRoot(t, dir)
	ctx := context.Background()
	var out fuse.EntryOut
	d, _ := lookupPath(t, root, "d")
	checks := map[string]syscall.Errno{
		"unlink":   d.Unlink(ctx, "y"),
		"rmdir":    root.Rmdir(ctx, "d"),
		"rename":   root.Rename(ctx, "d", root, "d2", 0),
		"setattr":  root.Setattr(ctx, nil, &fuse.SetAttrIn{}, &fuse.AttrOut{}),
		"setxattr": root.Setxattr(ctx, "user.x", []byte("1"), 0),
	}
	_, checks["mkdir"] = root.Mkdir(ctx, "new", 0o755, &out)
	_, _, _, checks["create"] = root.Create(ctx, "new", 0, 0o644, &out)
	_, checks["symlink"] = root.Symlink(ctx, "t", "new", &out)
	y, _ := lookupPath(t, root, "d/y")
	_, _, checks["open for write"] = y.Open(ctx, syscall.O_WRONLY)
	_, _, checks["open O_TRUNC"] = y.Open(ctx, syscall.O_RDONLY|syscall.O_TRUNC)
	for op, errno := range checks {
		if errno != syscall.EROFS {
			t.Errorf("%s: errno %v, want EROFS", op, errno)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d/y")); err != nil {
		t.Errorf("source changed: %v", err)
	}
	var s usage.LayerStats
	acct.stats(&s)
	if s.Errors["EROFS"] != int64(len(checks)) {
		t.Errorf("EROFS counted %d times, want %d", s.Errors["EROFS"], len(checks))
	}
}

func TestResolveStaysBeneathRoot(t *testing.T) {
	dir := duccLayer(t)
	root, _ := newTestRoot(t, dir)
	// "s" is a symlink to ../../etc: nothing may be resolved through it.
	for _, rel := range []string{"s/passwd", "s", "../etc/passwd", "d/../../etc/passwd"} {
		fd, err := beneath.Open(root.tree.rootfd, rel, unix.O_RDONLY)
		if err == nil {
			unix.Close(fd)
			t.Errorf("beneath.Open(%q) escaped the layer root", rel)
		}
	}
	// A node whose path crosses the symlink (the kernel never asks for one,
	// but a swapped backing tree could) cannot be opened either.
	forged := &node{tree: root.tree, rel: "s/passwd", attr: cache.Attr{Mode: sIFREG}}
	if _, _, errno := forged.Open(context.Background(), syscall.O_RDONLY); errno == 0 {
		t.Error("opened a path through a symlink")
	}
	s, _ := lookupPath(t, root, "s")
	target, errno := s.Readlink(context.Background())
	if errno != 0 || string(target) != "../../etc" {
		t.Errorf("readlink = %q, %v; want the target verbatim", target, errno)
	}
}
