//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// A layer whose layerfs or <hex> directory is a symlink (here to a host
// directory) is not served: the mount would show host files. The regular
// layer beside them still is.
func TestMountRefusesSymlinkedLayer(t *testing.T) {
	requireFUSE(t)
	ctx := context.Background()
	tmp := t.TempDir()
	host := filepath.Join(tmp, "host")
	writeFile(t, host, "secret", "host")
	writeFile(t, host, "layerfs/secret", "host")
	repo := ducc.New(filepath.Join(tmp, "repo"))
	regular, viaLayerFS, viaHex := digest.FromString("regular"), digest.FromString("layerfs"), digest.FromString("hex")
	src, _ := repo.UnpackedDir(regular)
	writeFile(t, src, "f", "layer")
	symlink := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(host, p); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := repo.UnpackedDir(viaLayerFS)
	symlink(p)
	p, _ = repo.UnpackedDir(viaHex)
	symlink(p)

	m, err := NewManager(repo)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	base := t.TempDir()
	sweepMounts(t, base)
	for _, layer := range []digest.Digest{viaLayerFS, viaHex} {
		mp := newDir(t, base, layer.Encoded()[:8])
		if err := m.Mount(ctx, mp, layer); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Mount of %s = %v, want InvalidArgument", layer, err)
		}
		if ok, _ := mountutil.IsMounted(mp); ok {
			t.Errorf("%s left mounted", mp)
		}
	}
	mp := newDir(t, base, "regular")
	if err := m.Mount(ctx, mp, regular); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "layer" {
		t.Errorf("regular layer: %q %v", b, err)
	}
	if err := m.Unmount(ctx, mp); err != nil {
		t.Error(err)
	}
}
