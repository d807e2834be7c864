//go:build linux

package bindmount

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

func TestMountCheckUnmount(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	layer := digest.FromString("layer")
	repo := ducc.New(filepath.Join(tmp, "repo"))
	src, _ := repo.UnpackedDir(layer)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(tmp, "mp")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	m := New(repo)
	if err := m.Check(ctx, mp); !errdefs.IsUnavailable(err) {
		t.Fatalf("Check before Mount = %v", err)
	}
	if err := m.Mount(ctx, mp, digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Fatalf("Mount of an absent layer = %v", err)
	}
	if err := m.Mount(ctx, mp, layer); err != nil {
		t.Fatal(err)
	}
	// Same filesystem as the mountpoint's parent, still detected as mounted.
	if err := m.Check(ctx, mp); err != nil {
		t.Fatalf("Check = %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "x" {
		t.Fatalf("read = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(mp, "g"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("write through the bind mount = %v, want EROFS", err)
	}
	if err := m.Unmount(ctx, mp); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(ctx, mp); !errdefs.IsUnavailable(err) {
		t.Fatalf("Check after Unmount = %v", err)
	}
	if err := m.Unmount(ctx, mp); err != nil {
		t.Fatalf("second Unmount = %v", err)
	}
	if _, err := os.Stat(filepath.Join(src, "f")); err != nil {
		t.Fatalf("source damaged: %v", err)
	}
}

// A layer whose layerfs or <hex> directory is a symlink (here to a host
// directory) is refused: the bind mount would show host files.
func TestMountRefusesSymlinkedLayer(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	host := filepath.Join(tmp, "host")
	for _, d := range []string{host, filepath.Join(host, "layerfs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "secret"), []byte("host"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo := ducc.New(filepath.Join(tmp, "repo"))
	regular, viaLayerFS, viaHex := digest.FromString("regular"), digest.FromString("layerfs"), digest.FromString("hex")
	src, _ := repo.UnpackedDir(regular)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _ := repo.UnpackedDir(viaLayerFS)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, p); err != nil {
		t.Fatal(err)
	}
	p, _ = repo.UnpackedDir(viaHex)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, p); err != nil {
		t.Fatal(err)
	}

	m := New(repo)
	for i, layer := range []digest.Digest{viaLayerFS, viaHex} {
		mp := filepath.Join(tmp, fmt.Sprintf("mp%d", i))
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		err := m.Mount(ctx, mp, layer)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("Mount of %s = %v, want InvalidArgument", layer, err)
		}
		if b, err := os.ReadFile(filepath.Join(mp, "secret")); err == nil {
			t.Errorf("host file visible at the mountpoint: %q", b)
		}
		if err := m.Check(ctx, mp); err == nil {
			t.Errorf("%s left mounted", mp)
			m.Unmount(ctx, mp)
		}
	}
	mp := filepath.Join(tmp, "regular")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(ctx, mp, regular); err != nil {
		t.Fatal(err)
	}
	defer m.Unmount(ctx, mp)
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "layer" {
		t.Errorf("regular layer: %q %v", b, err)
	}
}
