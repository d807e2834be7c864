//go:build linux

package fusefs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// waitWalks waits for the layer walks m started.
func waitWalks(m *Manager) { m.walks.Wait() }

func TestWalkShape(t *testing.T) {
	for _, tc := range []struct {
		name   string
		files  []string
		link   bool // root/ln -> a directory holding the opaque marker
		opaque bool
	}{
		{"plain", []string{"a", "d/b", "d/e/f", ".wh.x", "d/.wh.y", ".cvmfscatalog"}, false, false},
		{"opaque at the root", []string{"a", ".wh..wh..opq"}, false, true},
		{"opaque deep", []string{"a", "d/e/f/g/.wh..wh..opq", "d/e/h"}, false, true},
		{"opaque behind a symlink is not followed", []string{"a"}, true, false},
		{"empty", nil, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, f := range tc.files {
				writeFile(t, root, f, "")
			}
			if tc.link {
				outside := t.TempDir()
				writeFile(t, outside, "o/.wh..wh..opq", "")
				if err := os.Symlink(filepath.Join(outside, "o"), filepath.Join(root, "ln")); err != nil {
					t.Fatal(err)
				}
			}
			fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			s, err := walkShape(context.Background(), fd)
			if err != nil {
				t.Fatal(err)
			}
			if s.Opaque != tc.opaque {
				t.Errorf("opaque = %v, want %v (%+v)", s.Opaque, tc.opaque, s)
			}
			if !tc.opaque && s.Entries < int64(len(tc.files)) {
				t.Errorf("walk saw %d entries, want at least %d", s.Entries, len(tc.files))
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		root := t.TempDir()
		writeFile(t, root, "d/a", "")
		fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := walkShape(ctx, fd); !errors.Is(err, context.Canceled) {
			t.Errorf("walk of a cancelled context: %v, want context.Canceled", err)
		}
	})
}

// A shape file is the daemon's own, but it is read as hostile input: only
// a small, regular, well-formed file of the current version counts.
func TestLoadShape(t *testing.T) {
	dir := t.TempDir()
	layer := testDigest("layer")
	p := shapeFile(dir, layer)
	if p == "" || filepath.Dir(p) != dir {
		t.Fatalf("shapeFile = %q", p)
	}
	for _, bad := range []digest.Digest{"", "sha256:../../x", "sha512:" + digest.Digest(strings.Repeat("a", 128)), "sha256:ABC"} {
		if shapeFile(dir, bad) != "" {
			t.Errorf("shapeFile(%q) = %q, want none", bad, shapeFile(dir, bad))
		}
	}
	if _, ok := loadShape(dir, layer); ok {
		t.Errorf("loaded a shape that was never saved")
	}
	want := layerShape{Version: shapeVersion, Opaque: true, Dirs: 3, Entries: 9}
	if err := saveShape(dir, layer, want); err != nil {
		t.Fatal(err)
	}
	if got, ok := loadShape(dir, layer); !ok || got != want {
		t.Errorf("loadShape = %+v, %v; want %+v", got, ok, want)
	}
	for name, write := range map[string]func() error{
		"malformed":     func() error { return os.WriteFile(p, []byte("{"), 0o600) },
		"unknown field": func() error { return os.WriteFile(p, []byte(`{"version":1,"opaque":false,"x":1}`), 0o600) },
		"old version":   func() error { return os.WriteFile(p, []byte(`{"version":0,"opaque":false}`), 0o600) },
		"huge":          func() error { return os.WriteFile(p, []byte(`{"version":1`+strings.Repeat(" ", 8<<10)+`}`), 0o600) },
		"fifo":          func() error { return unix.Mkfifo(p, 0o600) },
		"symlink": func() error {
			good := filepath.Join(t.TempDir(), "good.json")
			if err := os.WriteFile(good, []byte(`{"version":1,"opaque":false}`), 0o600); err != nil {
				return err
			}
			return os.Symlink(good, p)
		},
	} {
		t.Run(name, func(t *testing.T) {
			os.Remove(p)
			if err := write(); err != nil {
				t.Fatal(err)
			}
			if s, ok := loadShape(dir, layer); ok {
				t.Errorf("loaded %+v from a %s file", s, name)
			}
		})
	}
}

// getxattrCount reads attr of every path below mp and returns how many
// GETXATTR requests that sent, checking that no attribute is presented.
func getxattrCount(t *testing.T, c *opcodeCounter, mp string, paths []string, attr string) int {
	t.Helper()
	before := c.count("GETXATTR")
	for _, p := range paths {
		_, err := unix.Lgetxattr(filepath.Join(mp, p), attr, make([]byte, 16))
		if !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("getxattr %s %s: %v, want ENODATA or EOPNOTSUPP", p, attr, err)
		}
	}
	return c.count("GETXATTR") - before
}

// A layer with no opaque directory costs one GETXATTR round trip per
// mount, not one per request: once its walk shows no opaque directory, the
// next request is answered ENOSYS and the kernel sends no more. A layer
// with one keeps answering, correctly.
func TestXattrRoundTrips(t *testing.T) {
	paths := []string{"a", "b", "d", "d/c", "d/e", "d/f", ".", "d/g", "h", "i"}
	plain := t.TempDir()
	for _, p := range paths {
		if p != "." && p != "d" {
			writeFile(t, plain, p, p)
		}
	}
	writeFile(t, plain, ".wh.gone", "") // whiteouts need no xattr
	c := newOpcodeCounter()
	m, mp, layer := mountLayer(t, plain, withRequestLog(c), WithStateDir(t.TempDir()))
	waitWalks(m)
	if n := getxattrCount(t, c, mp, paths, "trusted.overlay.metacopy"); n > 1 {
		t.Errorf("%d getxattrs on a layer without opaque directories sent %d GETXATTR requests; want at most 1", len(paths), n)
	}
	if n := getxattrCount(t, c, mp, paths, "security.capability"); n != 0 {
		t.Errorf("getxattrs after the kernel was told ENOSYS sent %d GETXATTR requests", n)
	}
	if _, err := unix.Llistxattr(filepath.Join(mp, "a"), make([]byte, 64)); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		t.Errorf("listxattr: %v", err)
	}
	if st, err := os.Lstat(filepath.Join(mp, "gone")); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("whiteout gone: %v, %v; want a character device", st, err)
	}
	if ls := m.state(layer); !ls.shapeKnown.Load() || !ls.noXattrs.Load() {
		t.Errorf("shape known %v, no xattrs %v", ls.shapeKnown.Load(), ls.noXattrs.Load())
	}

	opq := t.TempDir()
	writeFile(t, opq, "a", "a")
	writeFile(t, opq, "d/.wh..wh..opq", "")
	c2 := newOpcodeCounter()
	m2, mp2, _ := mountLayer(t, opq, withRequestLog(c2))
	waitWalks(m2)
	if n := getxattrCount(t, c2, mp2, []string{"a", "a", "a"}, "trusted.overlay.metacopy"); n != 3 {
		t.Errorf("a layer with an opaque directory sent %d GETXATTR requests for 3 getxattrs; want 3", n)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(mp2, "d"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque dir: %q, %v", buf[:n], err)
	}
}

// What a walk learns is kept in the state dir: the next Manager (a
// restarted daemon) knows the shape at mount, without walking.
func TestShapeKeptInStateDir(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "d/f", "f")
	state := filepath.Join(t.TempDir(), "shapes")
	m, _, layer := mountLayer(t, src, WithStateDir(state))
	waitWalks(m)
	s, ok := loadShape(state, layer)
	if !ok || s.Opaque || s.Dirs != 2 {
		t.Fatalf("kept shape %+v, %v; want not opaque, 2 directories", s, ok)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir: %v, %v; want mode 0700", fi, err)
	}
	// A kept shape says opaque although the tree has none: the next
	// Manager believes the file, so it did not walk.
	if err := saveShape(state, layer, layerShape{Version: shapeVersion, Opaque: true}); err != nil {
		t.Fatal(err)
	}
	m2, _, _ := mountLayer(t, src, WithStateDir(state))
	ls := m2.state(layer)
	if !ls.shapeKnown.Load() || ls.noXattrs.Load() || ls.walking {
		t.Errorf("after mount: shape known %v, no xattrs %v, walking %v; want the kept shape, no walk", ls.shapeKnown.Load(), ls.noXattrs.Load(), ls.walking)
	}
}

// Close stops the walks: none runs after it, and none starts.
func TestCloseStopsWalk(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "f", "f")
	m, _, layer := mountLayer(t, src)
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.walkCtx.Err() == nil {
		t.Errorf("walk context still live after Close")
	}
	fd, err := unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ls := &layerState{}
	m.learnShape(context.Background(), layer, ls, fd)
	if ls.walking {
		t.Errorf("a walk started after Close")
	}
}

// Close does not wait for ever for a walk stuck in the layer store (a
// CVMFS that does not answer): it returns once its bound has passed, and
// the walk ends on its own later.
func TestCloseDoesNotWaitForStuckWalk(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	writeFile(t, src, "f", "f")
	layer := testDigest(src)
	m, err := NewManager(dirSource{layer: src})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	m.walk = func(context.Context, int) (layerShape, error) {
		close(started)
		<-release // a syscall that ignores the context
		return layerShape{}, errors.New("released")
	}
	defer close(release)
	base := t.TempDir()
	sweepMounts(t, base)
	mp := filepath.Join(base, "mnt")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(context.Background(), mp, layer); err != nil {
		t.Fatal(err)
	}
	<-started
	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		closed <- m.Close(ctx)
	}()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(time.Minute): // a hang, not a speed check
		t.Fatal("Close waited for a walk that does not end")
	}
	if ok, err := mountutil.IsMounted(mp); err != nil || ok {
		t.Errorf("after Close the layer is still mounted (%v, %v)", ok, err)
	}
}
