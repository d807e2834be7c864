//go:build linux

package ducc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
)

// symlinkedRepo is a repository holding one regular layer and layers
// whose path leads out of the repository through a symlink, each to a host
// directory holding a file "secret" and .metadata/layers.json.
type symlinkedRepo struct {
	repo *ducc.Repo
	host string
	// regular is a proper layer; the others are reached through a symlink
	// at the named component.
	regular, layerfs, hex, prefix digest.Digest
}

func newSymlinkedRepo(t *testing.T) symlinkedRepo {
	t.Helper()
	root := t.TempDir()
	host := t.TempDir()
	mkfile := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	symlink := func(target, p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	// The host tree looks like a layer directory and like a layerfs.
	mkfile(filepath.Join(host, "secret"), "host")
	mkfile(filepath.Join(host, "layerfs", "secret"), "host")
	mkfile(filepath.Join(host, ".metadata", "layers.json"), `[{"diff-size": 666}]`)
	hexdir := func(d digest.Digest) string {
		return filepath.Join(root, ".layers", d.Encoded()[:2], d.Encoded())
	}
	s := symlinkedRepo{
		repo:    ducc.New(root),
		host:    host,
		regular: digest.FromString("regular"),
		layerfs: digest.FromString("layerfs"),
		hex:     digest.FromString("hex"),
	}
	mkfile(filepath.Join(hexdir(s.regular), "layerfs", "f"), "layer")
	mkfile(filepath.Join(hexdir(s.regular), ".metadata", "layers.json"), `[{"diff-size": 42}]`)
	symlink(host, filepath.Join(hexdir(s.layerfs), "layerfs"))
	symlink(host, hexdir(s.hex))
	// A digest whose .layers/<xx> is a symlink to a directory holding
	// <hex> (a digest with a prefix no other test digest has).
	for i := 0; ; i++ {
		s.prefix = digest.FromString("prefix" + string(rune('a'+i)))
		p := s.prefix.Encoded()[:2]
		if p != s.regular.Encoded()[:2] && p != s.layerfs.Encoded()[:2] && p != s.hex.Encoded()[:2] {
			break
		}
	}
	symlink(host, filepath.Dir(hexdir(s.prefix)))
	if err := os.Symlink(host, filepath.Join(host, s.prefix.Encoded())); err != nil {
		t.Fatal(err)
	}
	return s
}

// A layer reached through a symlink (layerfs, <hex> or <xx>) is refused
// with a clear error: following it would serve a host directory.
func TestLookupRefusesSymlinks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := newSymlinkedRepo(t)
	for name, layer := range map[string]digest.Digest{"layerfs": s.layerfs, "hex": s.hex, "prefix": s.prefix} {
		t.Run(name, func(t *testing.T) {
			p, err := s.repo.Lookup(ctx, layer)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("Lookup = %q, %v; want an InvalidArgument error naming the symlink", p, err)
			}
			if infos, err := s.repo.Metadata(ctx, layer); err == nil {
				t.Errorf("Metadata read through a symlink: %+v", infos)
			}
			if n, err := s.repo.DiffSize(ctx, layer); err == nil {
				t.Errorf("DiffSize read through a symlink: %d", n)
			}
		})
	}
	p, err := s.repo.Lookup(ctx, s.regular)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(p, "f")); err != nil || string(b) != "layer" {
		t.Errorf("regular layer: %q %v", b, err)
	}
	if n, err := s.repo.DiffSize(ctx, s.regular); err != nil || n != 42 {
		t.Errorf("regular layer's DiffSize = %d, %v; want 42", n, err)
	}
}

// Metadata refuses a layers.json that is a symlink (out of the repository)
// or not a regular file, without opening it: a fifo would block.
func TestMetadataRefusesNonRegular(t *testing.T) {
	s := newSymlinkedRepo(t)
	dir, _ := s.repo.LayerDir(s.regular)
	meta := filepath.Join(dir, ".metadata", "layers.json")
	for name, create := range map[string]func() error{
		"symlink": func() error { return os.Symlink(filepath.Join(s.host, ".metadata", "layers.json"), meta) },
		"fifo":    func() error { return unix.Mkfifo(meta, 0o644) },
		"dir":     func() error { return os.Mkdir(meta, 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := os.RemoveAll(meta); err != nil {
				t.Fatal(err)
			}
			if err := create(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := s.repo.Metadata(ctx, s.regular)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Error("Metadata succeeded")
				}
			case <-ctx.Done():
				// Unblock a reader stuck on the fifo.
				if f, err := os.OpenFile(meta, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatal("Metadata did not return")
			}
		})
	}
}

// OpenLayer hands out the layer root itself, so nothing re-resolves the
// path after the check.
func TestOpenLayer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := newSymlinkedRepo(t)
	for _, layer := range []digest.Digest{s.layerfs, s.hex, s.prefix} {
		if f, err := s.repo.OpenLayer(ctx, layer); !errdefs.IsInvalidArgument(err) {
			t.Errorf("OpenLayer(%s) = %v, %v; want InvalidArgument", layer, f, err)
		}
	}
	if _, err := s.repo.OpenLayer(ctx, digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Errorf("OpenLayer of an absent layer = %v, want NotFound", err)
	}
	if _, err := s.repo.OpenLayer(ctx, "sha256:bad"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("OpenLayer of a bad digest = %v, want InvalidArgument", err)
	}
	f, err := s.repo.OpenLayer(ctx, s.regular)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(f.Fd()), "f", &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Size != int64(len("layer")) {
		t.Errorf("f beneath the opened root: size %d %v", st.Size, err)
	}
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	if _, err := s.repo.OpenLayer(cancelled, s.regular); err != nil && !errdefs.IsUnavailable(err) {
		t.Errorf("OpenLayer with a cancelled context = %v, want nil or Unavailable", err)
	}
}
