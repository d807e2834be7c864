//go:build linux

package ducc

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// walkBeneath (used where openat2 is missing) refuses what openat2's
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS refuses.
func TestWalkBeneath(t *testing.T) {
	root := t.TempDir()
	host := t.TempDir()
	for _, d := range []string{"a/b", "f"} {
		p := filepath.Join(root, d)
		if d == "f" {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(host, filepath.Join(root, "a/l")); err != nil {
		t.Fatal(err)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootfd)
	for _, tc := range []struct {
		rel  string
		dir  bool
		want error
	}{
		{"a/b", true, nil},
		{"f", false, nil},
		{"f", true, unix.ENOTDIR},
		{"f/x", false, unix.ENOTDIR},
		{"a/l", true, unix.ELOOP},
		{"a/l", false, unix.ELOOP},
		{"a/l/x", false, unix.ELOOP},
		{"a/../../x", false, unix.EXDEV},
		{"a/missing", true, unix.ENOENT},
	} {
		fd, err := walkBeneath(rootfd, tc.rel, tc.dir)
		if err == nil {
			unix.Close(fd)
		}
		if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("walkBeneath(%q, dir %v) = %v, want %v", tc.rel, tc.dir, err, tc.want)
		}
	}
}
