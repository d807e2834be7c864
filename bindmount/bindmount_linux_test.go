//go:build linux

package bindmount

import (
	"context"
	"errors"
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
	src, _ := repo.LayerFS(layer)
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
