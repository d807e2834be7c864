package snapshot

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
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
