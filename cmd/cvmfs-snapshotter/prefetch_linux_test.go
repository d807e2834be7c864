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

// prefetchDaemon is a daemon started with conf serving one layer of
// files, with profile published next to it (none if nil).
type prefetchDaemon struct {
	mountpoint string
	stats      func() usage.LayerStats
	log        func() string
}

// startPrefetchDaemon starts the daemon with conf over a repository of one
// layer named name holding files, with profile published next to it
// unless nil, and mounts the layer.
func startPrefetchDaemon(t *testing.T, name string, files map[string]string, profile []string, conf string) prefetchDaemon {
	t.Helper()
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	bin, dir := buildDaemon(t), t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, dir) })
	repo := filepath.Join(dir, "repo")
	layer := layerDigest(name)
	layerDir := ducctest.WriteLayer(t, repo, layer, files, 1<<20)
	if profile != nil {
		b, err := json.Marshal(usage.PublishedProfile{Version: usage.PublishedProfileVersion, Layer: layer, Files: profile})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(layerDir, ".metadata"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(layerDir, ".metadata", usage.PublishedProfileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d := startDaemon(t, bin, dir, fmt.Sprintf("absolute-mountpoint = %q\n%s", repo, conf))
	t.Cleanup(func() { d.stop(t) })
	chain := ducctest.DiffID(layer).String()
	_, err := d.client(t).Prepare(context.Background(), "extract-1 "+chain, "", snapshots.WithLabels(map[string]string{
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
	return prefetchDaemon{
		mountpoint: mps[0].Mountpoint,
		stats: func() usage.LayerStats {
			t.Helper()
			st, err := admin.Stats(context.Background())
			if err != nil || len(st) != 1 {
				t.Fatalf("stats = %+v, %v; want the one layer", st, err)
			}
			return st[0]
		},
		log: func() string { return readFile(d.log.Name()) },
	}
}

// waitPrefetched waits until d's prefetch has read files files.
func (d prefetchDaemon) waitPrefetched(t *testing.T, files int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for d.stats().PrefetchFiles < files {
		if time.Now().After(deadline) {
			t.Fatalf("prefetch read %d files, want %d; log:\n%s", d.stats().PrefetchFiles, files, d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrefetchPageCache: with prefetch-page-cache, the daemon starts its
// prefetch-reader subcommand, which reads the files of the layer's
// published profile through the mount without their being counted; a
// later read of them sends no READ to the daemon.
func TestPrefetchPageCache(t *testing.T) {
	files := map[string]string{}
	var names []string
	for i := range 20 {
		name := fmt.Sprintf("d%d/f%02d", i%4, i)
		files[name] = fmt.Sprintf("file %d\n", i)
		names = append(names, name)
	}
	files["other"] = "not in the profile\n"
	d := startPrefetchDaemon(t, "prefetch-page-cache", files, names, "prefetch-page-cache = true\n")
	d.waitPrefetched(t, int64(len(names)))
	if st := d.stats(); st.Reads != 0 || st.Lookups != 0 || st.UniqueFiles != 0 {
		t.Fatalf("the page reader's requests were counted: %+v", st)
	}
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(d.mountpoint, name))
		if err != nil || string(b) != fmt.Sprintf("file %d\n", i) {
			t.Fatalf("read %s: %q, %v", name, b, err)
		}
	}
	if st := d.stats(); st.Reads != 0 {
		t.Fatalf("reads of prefetched files sent %d READs to the daemon, want 0", st.Reads)
	}
	if _, err := os.ReadFile(filepath.Join(d.mountpoint, "other")); err != nil {
		t.Fatal(err)
	}
	if st := d.stats(); st.Reads != 1 || st.UniqueFiles != 1 {
		t.Fatalf("a read of a file not prefetched: %d READs, %d files counted; want 1, 1", st.Reads, st.UniqueFiles)
	}
}

// TestPrefetchDirectories: with prefetch-directories and no profile, a
// read of one file of a directory has the daemon read the directory's
// other files from the layer store, uncounted; a later read of one of
// them is counted, as a prefetch hit.
func TestPrefetchDirectories(t *testing.T) {
	files := map[string]string{"other/x": "x\n"}
	for i := range 10 {
		files[fmt.Sprintf("d/f%02d", i)] = fmt.Sprintf("file %d\n", i)
	}
	d := startPrefetchDaemon(t, "prefetch-directories", files, nil, "prefetch-directories = true\n")
	if _, err := os.ReadFile(filepath.Join(d.mountpoint, "d/f00")); err != nil {
		t.Fatal(err)
	}
	d.waitPrefetched(t, 9)
	time.Sleep(50 * time.Millisecond) // anything else it would read
	if st := d.stats(); st.PrefetchFiles != 9 || st.Reads != 1 || st.UniqueFiles != 1 {
		t.Fatalf("after reading d/f00: prefetch read %d files, %d READs and %d files counted; want 9 (d/f01 to d/f09), 1, 1", st.PrefetchFiles, st.Reads, st.UniqueFiles)
	}
	if b, err := os.ReadFile(filepath.Join(d.mountpoint, "d/f03")); err != nil || string(b) != "file 3\n" {
		t.Fatalf("read d/f03: %q, %v", b, err)
	}
	if st := d.stats(); st.PrefetchHits != 1 || st.UniqueFiles != 2 {
		t.Fatalf("after reading d/f03: %d hits, %d files counted; want 1, 2", st.PrefetchHits, st.UniqueFiles)
	}
}
