package main

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// BenchmarkRemotePrepareFUSE times the Prepare of a remote layer as the
// daemon serves it (in-process FUSE manager, DUCC-shaped repository, both
// accounting modes) with 0, 200 and 1,000 layers already mounted. Layers
// stack as images do, 20 to a chain. snapshot's BenchmarkRemotePrepare
// gives the snapshotter's own share.
//
// Run: go test -run '^$' -bench RemotePrepareFUSE -benchtime 100x ./cmd/cvmfs-snapshotter/
func BenchmarkRemotePrepareFUSE(b *testing.B) {
	testutil.RequiresFUSE(b)
	lvl := log.GetLevel()
	if err := log.SetLevel("warn"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = log.SetLevel(lvl.String()) })
	for _, acct := range []string{"reads", "open", "bytes"} {
		for _, mounted := range []int{0, 200, 1000} {
			b.Run(fmt.Sprintf("%s/mounted=%d", acct, mounted), func(b *testing.B) {
				benchRemotePrepareFUSE(b, acct, mounted)
			})
		}
	}
}

func benchRemotePrepareFUSE(b *testing.B, acct string, mounted int) {
	dir := testutil.TempDir(b)
	repoDir := filepath.Join(dir, "repo")
	for i := range mounted + b.N {
		writeBenchLayer(b, repoDir, benchLayer(i))
	}
	cfg := config.Default()
	cfg.Accounting = acct
	repo := ducc.New(repoDir)
	m, err := newManager(cfg, repo, nil)
	if err != nil {
		b.Fatal(err)
	}
	sopts, err := cfg.SnapshotOpts()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sn, err := snapshot.New(ctx, filepath.Join(dir, "root"),
		append(sopts, snapshot.WithLayerFS(sizedLayerFS{LayerFS: m, repo: repo}))...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := sn.Close(); err != nil {
			b.Errorf("close snapshotter: %v", err)
		}
		if err := m.Close(ctx); err != nil {
			b.Errorf("close manager: %v", err)
		}
	})
	for i := range mounted {
		prepareBenchLayer(b, sn, i)
	}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		prepareBenchLayer(b, sn, mounted+i)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/layer")
}

func benchLayer(i int) digest.Digest { return digest.FromString(fmt.Sprintf("bench-layer-%d", i)) }

// writeBenchLayer lays out a tiny layer the way DUCC does.
func writeBenchLayer(b *testing.B, repo string, layer digest.Digest) {
	ducctest.WriteLayer(b, repo, layer, map[string]string{"etc/hostname": layer.Encoded()}, 4096)
}

// benchChain is the chain id of layer i, on top of layer i-1 unless i
// starts a new image of 20 layers.
func benchChain(i int) string {
	d := ducctest.DiffID(benchLayer(i))
	if i%20 == 0 {
		return d.String()
	}
	return identity.ChainID([]digest.Digest{digest.Digest(benchChain(i - 1)), d}).String()
}

// prepareBenchLayer prepares remote layer i as containerd's unpacker does,
// on top of layer i-1 unless i starts a new image of 20 layers.
func prepareBenchLayer(b *testing.B, sn snapshots.Snapshotter, i int) {
	chain := benchChain
	parent := ""
	if i%20 != 0 {
		parent = chain(i - 1)
	}
	labels := snapshots.WithLabels(map[string]string{
		snapshot.LabelTarget:      chain(i),
		snapshot.LabelLayerDigest: benchLayer(i).String(),
	})
	_, err := sn.Prepare(context.Background(), "extract-"+chain(i), parent, labels)
	if !errdefs.IsAlreadyExists(err) {
		b.Fatalf("Prepare of layer %d = %v, want AlreadyExists", i, err)
	}
}
