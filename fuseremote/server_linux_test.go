//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
	"github.com/opencontainers/go-digest"
)

func (f *fakeManager) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// TestServerMountpoints: Mount and Check take only <root>/snapshots/<id>/fs,
// with no symlink on the way; the Manager never sees anything else.
func TestServerMountpoints(t *testing.T) {
	ctx := context.Background()
	layer := digest.FromString("l")
	fm := &fakeManager{mounted: map[string]digest.Digest{}, present: layer}
	c, fsDir := serve(t, fm, nil)
	good := fsDir("42")
	root := filepath.Dir(filepath.Dir(filepath.Dir(good)))
	outside := filepath.Join(filepath.Dir(root), "outside")
	if err := os.MkdirAll(filepath.Join(outside, "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(root, "snapshots")
	if err := os.Symlink(outside, filepath.Join(snaps, "7")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(snaps, "8"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "fs"), filepath.Join(snaps, "8", "fs")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snaps, "42", "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, mp string }{
		{"outside the root", filepath.Join(outside, "fs")},
		{"the root", root},
		{"dot-dot", snaps + "/42/../../../outside/fs"},
		{"dot-dot id", snaps + "/../fs"},
		{"unclean", snaps + "//42/fs"},
		{"trailing slash", good + "/"},
		{"relative", "root/snapshots/42/fs"},
		{"empty", ""},
		{"deeper", filepath.Join(good, "x")},
		{"not fs", filepath.Join(snaps, "42", "work")},
		{"a file", filepath.Join(snaps, "42", "file")},
		{"id with a space", filepath.Join(snaps, "4 2", "fs")},
		{"id starting with a dash", filepath.Join(snaps, "-1", "fs")},
		{"id is a symlink", filepath.Join(snaps, "7", "fs")},
		{"fs is a symlink", filepath.Join(snaps, "8", "fs")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Mount(ctx, tc.mp, layer)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("Mount(%q) = %v, want ErrInvalidArgument", tc.mp, err)
			}
			if err != nil && tc.mp != "" && !strings.Contains(err.Error(), "snapshots") && !strings.Contains(err.Error(), "directory") {
				t.Errorf("Mount(%q) error does not say what is wanted: %v", tc.mp, err)
			}
			if tc.name != "a file" && tc.name != "fs is a symlink" {
				if err := c.Check(ctx, tc.mp); !errdefs.IsInvalidArgument(err) {
					t.Errorf("Check(%q) = %v, want ErrInvalidArgument", tc.mp, err)
				}
			}
		})
	}
	if n := fm.callCount(); n != 0 {
		t.Fatalf("the Manager got %d calls for refused mountpoints", n)
	}
	if err := c.Mount(ctx, good, layer); err != nil {
		t.Fatalf("Mount at %s: %v", good, err)
	}
	if _, ok := fm.mounted[good]; !ok {
		t.Fatalf("the Manager was not asked to mount %s: %v", good, fm.mounted)
	}
}

// TestServerUnmountsOnlyItsOwn: Unmount of anything the server did not
// mount (or has unmounted already) is ErrNotOwned, and the Manager is not
// asked.
func TestServerUnmountsOnlyItsOwn(t *testing.T) {
	ctx := context.Background()
	layer := digest.FromString("l")
	fm := &fakeManager{mounted: map[string]digest.Digest{}, present: layer}
	c, fsDir := serve(t, fm, nil)
	mp, never := fsDir("1"), fsDir("2")
	for _, p := range []string{never, "/", "/proc", mp} {
		if err := c.Unmount(ctx, p); err == nil {
			t.Errorf("Unmount(%q) of a path the server never mounted succeeded", p)
		}
	}
	if err := c.Unmount(ctx, never); !errors.Is(err, ErrNotOwned) || !errdefs.IsNotFound(err) {
		t.Errorf("Unmount of a well-formed path never mounted = %v, want ErrNotOwned (NotFound)", err)
	}
	if n := fm.callCount(); n != 0 {
		t.Fatalf("the Manager got %d calls", n)
	}
	if err := c.Mount(ctx, mp, layer); err != nil {
		t.Fatal(err)
	}
	if err := c.Unmount(ctx, mp); err != nil {
		t.Fatalf("Unmount of its own mount: %v", err)
	}
	if err := c.Unmount(ctx, mp); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("second Unmount = %v, want ErrNotOwned", err)
	}
}

// TestServerChecksPeer: a connection from any uid but the allowed one is
// closed unanswered and reaches nothing.
func TestServerChecksPeer(t *testing.T) {
	dir := t.TempDir()
	fm := &fakeManager{mounted: map[string]digest.Digest{}}
	srv, err := NewServer(fm, dir, WithPeerUID(os.Geteuid()+1))
	if err != nil {
		t.Fatal(err)
	}
	l, err := unixsock.Listen(filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	c := NewClient(filepath.Join(dir, "s.sock"))
	if err := c.Unmount(context.Background(), filepath.Join(dir, "snapshots", "1", "fs")); err == nil || errors.Is(err, ErrNotOwned) {
		t.Fatalf("Unmount from a refused peer = %v, want no answer", err)
	}
	if st, err := c.Stats(); err == nil || st != nil {
		t.Fatalf("Stats from a refused peer = %+v, %v", st, err)
	}
	if n := fm.callCount(); n != 0 {
		t.Fatalf("the Manager got %d calls", n)
	}
}
