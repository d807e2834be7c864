//go:build linux

package fusefs

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestMountXattrs: the opaque attributes are synthesised, and the backing
// tree's own attributes (overlay ones included) never show: a layer
// presents none but the opaque marker.
func TestMountXattrs(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	writeFile(t, src, "f", "f")
	writeFile(t, src, "opq/.wh..wh..opq", "")
	writeFile(t, src, "plain/x", "")
	if err := unix.Setxattr(filepath.Join(src, "f"), "user.origin", []byte("ducc"), 0); err != nil {
		testutil.Skip(t, "backing filesystem without user xattrs: %v", err)
	}
	if err := unix.Setxattr(filepath.Join(src, "plain"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	_, mp, _ := mountLayer(t, src)
	get := func(rel, attr string) (string, error) {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(mp, rel), attr, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	list := func(rel string) []string {
		buf := make([]byte, 1024)
		n, err := unix.Llistxattr(filepath.Join(mp, rel), buf)
		if err != nil {
			t.Fatalf("listxattr %s: %v", rel, err)
		}
		return strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
	}
	if v, err := get("f", "user.origin"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.origin = %q, %v; want ENODATA (the backing tree's attributes are not the image's)", v, err)
	}
	if l := list("f"); len(l) != 1 || l[0] != "" {
		t.Errorf("listxattr f = %q, want nothing", l)
	}
	for _, attr := range opaqueXattrs {
		if v, err := get("opq", attr); err != nil || v != "y" {
			t.Errorf("opaque dir %s = %q, %v", attr, v, err)
		}
		if _, err := get("plain", attr); !errors.Is(err, unix.ENODATA) {
			t.Errorf("plain dir %s: %v, want ENODATA (the backing's own overlay xattr must not leak)", attr, err)
		}
	}
	if l := list("opq"); !slices.Contains(l, "trusted.overlay.opaque") || !slices.Contains(l, "user.overlay.opaque") {
		t.Errorf("listxattr opq = %q", l)
	}
}
