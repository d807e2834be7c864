package unixsock

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCheck(t *testing.T) {
	long := "/" + strings.Repeat("d", 110)
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/run/cvmfs/admin.sock", true},
		{"relative.sock", true},
		{"", false},
		{"/", false},
		{"/run/", false},
		{"/run/a\x00b", false},
		{long + ".sock", false},
		{long + "/s", false}, // fits, but not its temporary name
		{"/" + strings.Repeat("d", 90) + "/s", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			err := Check(tc.path)
			if tc.ok != (err == nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
				t.Errorf("Check(%q) = %v, want ok %v", tc.path, err, tc.ok)
			}
		})
	}
}

// TestCheckMatchesListen: the longest path Check accepts is one Listen
// binds, in a directory others can enter (through the temporary name) and
// in a private one.
func TestCheckMatchesListen(t *testing.T) {
	for _, mode := range []os.FileMode{0o755, 0o700} {
		dir := t.TempDir()
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, strings.Repeat("s", maxPath-len(dir)))
		if err := Check(path); err == nil {
			t.Fatalf("Check accepted %d bytes", len(path))
		}
		if l, err := Listen(path); err == nil {
			l.Close()
			t.Fatalf("Listen bound %d bytes: the bound is wrong", len(path))
		}
		sub := filepath.Join(dir, strings.Repeat("d", maxPath-len(dir)-tmpOverhead-1))
		if err := os.Mkdir(sub, mode); err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(sub, strings.Repeat("s", maxPath-len(sub)-1))
		if err := Check(path); err != nil {
			t.Fatal(err)
		}
		l, err := Listen(path)
		if err != nil {
			t.Fatalf("Listen(%d bytes, dir mode %v): %v", len(path), mode, err)
		}
		l.Close()
	}
}
