package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/adminapi"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestPrefetchPageCache: with prefetch-page-cache, the daemon starts its
// prefetch-reader subcommand, which reads the files of the layer's
// published profile through the mount without their being counted; a
// later read of them sends no READ to the daemon.
func TestPrefetchPageCache(t *testing.T) {
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	bin, dir := buildDaemon(t), t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, dir) })
	repo := filepath.Join(dir, "repo")
	layer := layerDigest("prefetch-page-cache")
	files := map[string]string{}
	var names []string
	for i := range 20 {
		name := fmt.Sprintf("d%d/f%02d", i%4, i)
		files[name] = fmt.Sprintf("file %d\n", i)
		names = append(names, name)
	}
	files["other"] = "not in the profile\n"
	layerDir := ducctest.WriteLayer(t, repo, layer, files, 1<<20)
	b, err := json.Marshal(usage.PublishedProfile{Version: usage.PublishedProfileVersion, Layer: layer, Files: names})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(layerDir, ".metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(layerDir, ".metadata", usage.PublishedProfileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, bin, dir, fmt.Sprintf("absolute-mountpoint = %q\nprefetch-page-cache = true\n", repo))
	defer d.stop(t)
	chain := ducctest.DiffID(layer).String()
	_, err = d.client(t).Prepare(context.Background(), "extract-1 "+chain, "", snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref":              chain,
		"containerd.io/snapshot/cri.layer-digest": layer.String(),
	}))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a present layer = %v, want AlreadyExists", err)
	}
	mps, _ := mountutil.Under(d.root)
	if len(mps) != 1 {
		t.Fatalf("mounts = %+v, want the layer's", mps)
	}
	admin, err := adminapi.NewClient("unix://" + config.Default().AdminSocketPath(d.root))
	if err != nil {
		t.Fatal(err)
	}
	stats := func() usage.LayerStats {
		t.Helper()
		st, err := admin.Stats(context.Background())
		if err != nil || len(st) != 1 {
			t.Fatalf("stats = %+v, %v; want the one layer", st, err)
		}
		return st[0]
	}
	deadline := time.Now().Add(20 * time.Second)
	for stats().PrefetchFiles < int64(len(names)) {
		if time.Now().After(deadline) {
			t.Fatalf("prefetch read %d files, want %d; log:\n%s", stats().PrefetchFiles, len(names), readFile(d.log.Name()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := stats(); st.Reads != 0 || st.Lookups != 0 || st.UniqueFiles != 0 {
		t.Fatalf("the page reader's requests were counted: %+v", st)
	}
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(mps[0].Mountpoint, name))
		if err != nil || string(b) != fmt.Sprintf("file %d\n", i) {
			t.Fatalf("read %s: %q, %v", name, b, err)
		}
	}
	if st := stats(); st.Reads != 0 {
		t.Fatalf("reads of prefetched files sent %d READs to the daemon, want 0", st.Reads)
	}
	if _, err := os.ReadFile(filepath.Join(mps[0].Mountpoint, "other")); err != nil {
		t.Fatal(err)
	}
	if st := stats(); st.Reads != 1 || st.UniqueFiles != 1 {
		t.Fatalf("a read of a file not prefetched: %d READs, %d files counted; want 1, 1", st.Reads, st.UniqueFiles)
	}
}
