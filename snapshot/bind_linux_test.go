//go:build linux

package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/bindmount"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// writeDUCCLayer lays out a layer by hand the way DUCC does.
func writeDUCCLayer(t *testing.T, repo string, layer digest.Digest, files map[string]string, diffSize int64) {
	t.Helper()
	ducctest.WriteLayer(t, repo, layer, files, diffSize)
}

// sizedBind is what the daemon wires: bind mounts plus repository sizes
// and diff ids.
type sizedBind struct {
	*bindmount.Mounter
	repo *ducc.Repo
}

func (s sizedBind) LayerSize(ctx context.Context, layer digest.Digest) (int64, error) {
	return s.repo.DiffSize(ctx, layer)
}

func (s sizedBind) LayerDiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error) {
	return s.repo.DiffID(ctx, layer)
}

// TestBindRemoteLayerEndToEnd mounts a DUCC-shaped layer for real: the
// layer's files are visible at the snapshot, a container snapshot stacks on
// it, writes land in the container's upper dir, and a restart re-mounts it.
func TestBindRemoteLayerEndToEnd(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	repoDir := filepath.Join(tmp, "repo")
	writeDUCCLayer(t, repoDir, layerA, map[string]string{"hello": "from cvmfs", "etc/os-release": "ID=test"}, 1234)
	repo := ducc.New(repoDir)
	lfs := sizedBind{bindmount.New(repo), repo}
	root := filepath.Join(tmp, "root")
	// The chain its recorded diff id makes: the check is on.
	chainA := ducctest.DiffID(layerA).String()

	sn := newTestSnapshotter(t, root, lfs, WithChainCheck(true))
	if _, err := prepareLayer(t, sn, chainA, "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v, want ErrAlreadyExists", err)
	}
	u, err := sn.Usage(ctx, chainA)
	if err != nil || u.Size != 1234 {
		t.Fatalf("Usage = %+v, %v; want 1234 from layers.json", u, err)
	}
	ms, err := sn.Prepare(ctx, "container", chainA)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, rootfs); err != nil {
		t.Fatalf("mount container rootfs: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "hello")); err != nil || string(b) != "from cvmfs" {
		t.Fatalf("layer file through the container rootfs: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "hello"), []byte("changed"), 0o644); err != nil {
		t.Fatalf("container write: %v", err)
	}
	if err := mount.UnmountAll(rootfs, 0); err != nil {
		t.Fatal(err)
	}
	src, _ := repo.UnpackedDir(layerA)
	if b, _ := os.ReadFile(filepath.Join(src, "hello")); string(b) != "from cvmfs" {
		t.Fatalf("the repository was modified: %q", b)
	}

	// Restart: Close unmounts, New re-mounts from the stored labels.
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if ms, _ := mountutil.Under(root); len(ms) != 0 {
		t.Fatalf("mounts left after Close: %+v", ms)
	}
	sn2 := newTestSnapshotter(t, root, lfs, WithChainCheck(true))
	ms, err = sn2.Mounts(ctx, "container")
	if err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, rootfs); err != nil {
		t.Fatalf("mount after restart: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(rootfs, "hello"))
	_ = mount.UnmountAll(rootfs, 0)
	if err != nil || string(b) != "changed" {
		t.Fatalf("container's own write after restart: %q, %v", b, err)
	}
	if err := sn2.Remove(ctx, "container"); err != nil {
		t.Fatal(err)
	}
	if err := sn2.Remove(ctx, chainA); err != nil {
		t.Fatal(err)
	}
	if ms, _ := mountutil.Under(root); len(ms) != 0 {
		t.Fatalf("mounts left after Remove: %+v", ms)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "hello")); string(b) != "from cvmfs" {
		t.Fatalf("Remove went into the repository: %q", b)
	}
}

// TestLeftoverMountOfAnUncommittedSnapshot: a crash between mounting a
// layer and committing it leaves the layer mounted on an active extraction
// snapshot. The next start unmounts it; Remove and Cleanup unmount such a
// mount too instead of refusing to delete the directory forever.
func TestLeftoverMountOfAnUncommittedSnapshot(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	repoDir := filepath.Join(tmp, "repo")
	writeDUCCLayer(t, repoDir, layerA, map[string]string{"f": "x"}, 1)
	repo := ducc.New(repoDir)
	lfs := sizedBind{bindmount.New(repo), repo}
	root := filepath.Join(tmp, "root")

	sn := newTestSnapshotter(t, root, lfs)
	for _, key := range []string{"extract-1", "extract-2"} {
		if _, err := sn.Prepare(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Mount the layer behind the snapshotter's back, as a crashed run would
	// have, on both active snapshots.
	var leftovers []string
	entries, _ := os.ReadDir(filepath.Join(root, "snapshots"))
	for _, e := range entries {
		mp := filepath.Join(root, "snapshots", e.Name(), "fs")
		if err := lfs.Mount(ctx, mp, layerA); err != nil {
			t.Fatal(err)
		}
		leftovers = append(leftovers, mp)
	}
	if len(leftovers) != 2 {
		t.Fatalf("%d snapshot dirs", len(leftovers))
	}
	// Remove unmounts the leftover and deletes the directory.
	if err := sn.Remove(ctx, "extract-1"); err != nil {
		t.Fatal(err)
	}
	gone := 0
	for _, mp := range leftovers {
		if _, err := os.Stat(filepath.Dir(mp)); errors.Is(err, os.ErrNotExist) {
			gone++
		}
	}
	if gone != 1 {
		t.Fatalf("Remove left the directory of a snapshot with a leftover mount")
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	// The next start unmounts the other leftover.
	sn2 := newTestSnapshotter(t, root, lfs)
	if ms, _ := mountutil.Under(root); len(ms) != 0 {
		t.Fatalf("leftover mounts after restart: %+v", ms)
	}
	if _, err := sn2.Mounts(ctx, "extract-2"); err != nil {
		t.Fatalf("the active snapshot itself was lost: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(repoDir, ".layers", layerA.Encoded()[:2], layerA.Encoded(), "layerfs", "f")); string(b) != "x" {
		t.Fatal("the layer store was touched")
	}
}

// TestBindBrokenLayerMetadata: a layer whose layers.json is broken is
// served with the chain check off, and its Usage says the size is unknown
// instead of 0. With the check on it is pulled: its chain cannot be
// verified.
func TestBindBrokenLayerMetadata(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	repoDir := filepath.Join(tmp, "repo")
	writeDUCCLayer(t, repoDir, layerA, map[string]string{"f": "x"}, 1)
	meta := filepath.Join(repoDir, ".layers", layerA.Encoded()[:2], layerA.Encoded(), ".metadata", "layers.json")
	if err := os.WriteFile(meta, []byte(`[{"id":"x","diff-size":"oops"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	repo := ducc.New(repoDir)
	sn := newTestSnapshotter(t, filepath.Join(tmp, "root"), sizedBind{bindmount.New(repo), repo})
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v, want ErrAlreadyExists", err)
	}
	if u, err := sn.Usage(ctx, "chain-a"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Usage = %+v, %v; want ErrUnavailable", u, err)
	}

	checked := newTestSnapshotter(t, filepath.Join(tmp, "checked"), sizedBind{bindmount.New(repo), repo}, WithChainCheck(true))
	if ms, err := prepareLayer(t, checked, ducctest.DiffID(layerA).String(), "", layerA); err != nil || len(ms) == 0 {
		t.Fatalf("Prepare with the chain check = %+v, %v; want writable mounts (a pull)", ms, err)
	}
}
