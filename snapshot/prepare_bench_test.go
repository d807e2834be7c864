package snapshot

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/plugins/snapshots/overlay"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// nopLayerFS mounts nothing and costs nothing: benchmarks of the core
// measure the snapshotter alone (metadata transactions, directories).
type nopLayerFS struct{}

func (nopLayerFS) Mount(context.Context, string, digest.Digest) error { return nil }
func (nopLayerFS) Check(context.Context, string) error                { return nil }
func (nopLayerFS) Unmount(context.Context, string) error              { return nil }
func (nopLayerFS) LayerSize(context.Context, digest.Digest) (int64, error) {
	return 4096, nil
}

// BenchmarkRemotePrepare times the Prepare of a remote layer (mounted and
// committed under its target, answering AlreadyExists) with 0, 200 and
// 1,000 remote layers already prepared, against a LayerFS that costs
// nothing: what the snapshotter itself spends per remote layer. Layers
// stack as images do, 20 to a chain.
//
// Run: go test -run '^$' -bench RemotePrepare ./snapshot/
func BenchmarkRemotePrepare(b *testing.B) {
	quietLogs(b)
	for _, mounted := range []int{0, 200, 1000} {
		b.Run(fmt.Sprintf("mounted=%d", mounted), func(b *testing.B) {
			sn, err := New(context.Background(), b.TempDir(), WithLayerFS(nopLayerFS{}), WithoutRestore())
			if err != nil {
				b.Fatal(err)
			}
			defer sn.Close()
			for i := range mounted {
				benchPrepareLayer(b, sn, i)
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				benchPrepareLayer(b, sn, mounted+i)
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/layer")
		})
	}
}

// benchPrepareLayer prepares remote layer i as containerd's unpacker does,
// on top of layer i-1 unless i starts a new image of 20 layers.
func benchPrepareLayer(b *testing.B, sn snapshots.Snapshotter, i int) {
	chain := func(i int) string { return fmt.Sprintf("chain-%d", i) }
	parent := ""
	if i%20 != 0 {
		parent = chain(i - 1)
	}
	labels := snapshots.WithLabels(map[string]string{
		LabelTarget:      chain(i),
		LabelLayerDigest: digest.FromString(chain(i)).String(),
	})
	_, err := sn.Prepare(context.Background(), "extract-"+chain(i), parent, labels)
	if !errdefs.IsAlreadyExists(err) {
		b.Fatalf("Prepare of layer %d = %v, want AlreadyExists", i, err)
	}
}

// quietLogs keeps the Info line of every Prepare out of benchmark output.
func quietLogs(b *testing.B) {
	lvl := log.GetLevel()
	if err := log.SetLevel("warn"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = log.SetLevel(lvl.String()) })
}

// BenchmarkContainerSnapshot times what a container's start and removal
// ask of the snapshotter: Prepare of its active snapshot on a 21-layer
// image of remote layers, Mounts, Remove; against containerd's own
// overlayfs snapshotter doing the same on a 21-layer image it unpacked,
// in the same run and directory tree. What the container benchmark's
// "start" spends in the snapshotter, without containerd, gRPC or runc.
func BenchmarkContainerSnapshot(b *testing.B) {
	quietLogs(b)
	ctx := context.Background()
	const layers = 21
	ours, err := New(ctx, b.TempDir(), WithLayerFS(nopLayerFS{}), WithoutRestore())
	if err != nil {
		b.Fatal(err)
	}
	defer ours.Close()
	for i := range layers {
		benchPrepareLayer(b, ours, i)
	}
	theirs, err := overlay.NewSnapshotter(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer theirs.Close()
	parent := ""
	for i := range layers {
		key := fmt.Sprintf("extract-%d", i)
		if _, err := theirs.Prepare(ctx, key, parent); err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("chain-%d", i)
		if err := theirs.Commit(ctx, name, key); err != nil {
			b.Fatal(err)
		}
		parent = name
	}
	top := fmt.Sprintf("chain-%d", layers-1)
	var tot [2]time.Duration
	for i := 0; b.Loop(); i++ {
		for j, sn := range []snapshots.Snapshotter{theirs, ours} {
			key := fmt.Sprintf("container-%d", i)
			t0 := time.Now()
			if _, err := sn.Prepare(ctx, key, top); err != nil {
				b.Fatal(err)
			}
			if _, err := sn.Mounts(ctx, key); err != nil {
				b.Fatal(err)
			}
			if err := sn.Remove(ctx, key); err != nil {
				b.Fatal(err)
			}
			tot[j] += time.Since(t0)
		}
	}
	n := float64(b.N)
	b.ReportMetric(float64(tot[0].Microseconds())/1000/n, "overlayfs-ms")
	b.ReportMetric(float64(tot[1].Microseconds())/1000/n, "ours-ms")
	b.ReportMetric(float64(tot[1])/float64(tot[0]), "ours/overlayfs")
}

// BenchmarkPrepareChainDepth shows what the depth of one image's chain
// costs a Prepare: containerd's metadata store walks the whole parent
// chain, for its own overlayfs snapshotter (Prepare and Commit of an
// empty layer, as an unpack does without the apply) as for ours (a remote
// layer over a LayerFS that costs nothing), measured in the same run at
// the bottom of a chain and 1,000 layers up.
func BenchmarkPrepareChainDepth(b *testing.B) {
	quietLogs(b)
	ctx := context.Background()
	for _, depth := range []int{0, 1000} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			ours, err := New(ctx, b.TempDir(), WithLayerFS(nopLayerFS{}), WithoutRestore())
			if err != nil {
				b.Fatal(err)
			}
			defer ours.Close()
			theirs, err := overlay.NewSnapshotter(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer theirs.Close()
			name := func(i int) string { return fmt.Sprintf("chain-%d", i) }
			addTheirs := func(i int) {
				parent := ""
				if i > 0 {
					parent = name(i - 1)
				}
				if _, err := theirs.Prepare(ctx, "extract-"+name(i), parent); err != nil {
					b.Fatal(err)
				}
				if err := theirs.Commit(ctx, name(i), "extract-"+name(i)); err != nil {
					b.Fatal(err)
				}
			}
			addOurs := func(i int) {
				parent := ""
				if i > 0 {
					parent = name(i - 1)
				}
				labels := snapshots.WithLabels(map[string]string{LabelTarget: name(i), LabelLayerDigest: digest.FromString(name(i)).String()})
				if _, err := ours.Prepare(ctx, "extract-"+name(i), parent, labels); !errdefs.IsAlreadyExists(err) {
					b.Fatalf("Prepare of layer %d = %v, want AlreadyExists", i, err)
				}
			}
			for i := range depth {
				addTheirs(i)
				addOurs(i)
			}
			var tot [2]time.Duration
			i := depth
			for b.Loop() {
				t0 := time.Now()
				addTheirs(i)
				t1 := time.Now()
				addOurs(i)
				tot[0] += t1.Sub(t0)
				tot[1] += time.Since(t1)
				i++
			}
			n := float64(b.N)
			b.ReportMetric(float64(tot[0].Microseconds())/1000/n, "overlayfs-ms/layer")
			b.ReportMetric(float64(tot[1].Microseconds())/1000/n, "ours-ms/layer")
		})
	}
}
