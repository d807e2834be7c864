//go:build linux

package fusefs

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The paired benchmarks measure the variants alternately within every
// iteration, so that both sides of each ratio see the same machine load
// (others build and test on the same two cores). Each reports the ratio
// "<variant>/native" of the total times, and native's own ns/op.

// paired runs op on every variant once per iteration, in turn, after one
// untimed warm-up each, and reports each variant's time relative to the
// first (native). The benchmark's own ns/op is the sum over the variants.
func paired(b *testing.B, vs []benchVariant, op func(b *testing.B, dir string)) {
	tot := make([]time.Duration, len(vs))
	for _, v := range vs {
		op(b, v.dir)
	}
	n := 0
	for b.Loop() {
		for i, v := range vs {
			start := time.Now()
			op(b, v.dir)
			tot[i] += time.Since(start)
		}
		n++
	}
	b.ReportMetric(float64(tot[0].Nanoseconds())/float64(n), "native-ns/op")
	for i, v := range vs[1:] {
		b.ReportMetric(float64(tot[i+1])/float64(tot[0]), v.name+"/native")
	}
}

// BenchmarkPaired compares sequential reads, random 4 KiB reads and warm
// and cold stat walks to native, variant by variant, iteration by
// iteration.
func BenchmarkPaired(b *testing.B) {
	src, size := bigFileLayer(b)
	file := variants(b, src)
	buf := make([]byte, 1<<20)
	b.Run("seq-read", func(b *testing.B) {
		paired(b, file, func(b *testing.B, dir string) { readAll(b, filepath.Join(dir, "big"), buf) })
	})
	b.Run("random-read-4k", func(b *testing.B) {
		fs := make(map[string]*os.File)
		for _, v := range file {
			f, err := os.Open(filepath.Join(v.dir, "big"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			fs[v.dir] = f
		}
		pages := size / 4096
		page := make([]byte, 4096)
		const reads = 1024 // per op and variant
		paired(b, file, func(b *testing.B, dir string) {
			r := rand.New(rand.NewPCG(1, 2)) // the same offsets for every variant
			for range reads {
				if _, err := fs[dir].ReadAt(page, r.Int64N(pages)*4096); err != nil {
					b.Fatal(err)
				}
			}
		})
	})

	tree, n := treeLayer(b)
	walk := func(b *testing.B, dir string) { statWalk(b, dir, n) }
	b.Run("stat-walk-warm", func(b *testing.B) { paired(b, variants(b, tree), walk) })
	b.Run("stat-walk-cold", func(b *testing.B) { pairedCold(b, tree, n) })
}

// pairedCold times, per iteration, a native walk and a walk through a fresh
// mount (new Manager: the attribute cache is cold too), and reports their
// ratio. With FUSEFS_BENCH_DROP_CACHES=1 it also times both after dropping
// the kernel's dentries and inodes, the cold case for native too.
func pairedCold(b *testing.B, src string, n int64) {
	requireFUSE(b)
	base := b.TempDir()
	sweepMounts(b, base)
	mp := newDir(b, base, "mnt")
	layer := testDigest(src)
	ctx := context.Background()
	drop := os.Getenv("FUSEFS_BENCH_DROP_CACHES") == "1"
	var native, fuse, nativeDrop, fuseDrop time.Duration
	timed := func(dir string) time.Duration {
		start := time.Now()
		statWalk(b, dir, n)
		return time.Since(start)
	}
	mounted := func(fn func()) {
		m, err := NewManager(dirSource{layer: src})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Mount(ctx, mp, layer); err != nil {
			b.Fatal(err)
		}
		fn()
		if err := m.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	statWalk(b, src, n)
	iters := 0
	for b.Loop() {
		native += timed(src)
		mounted(func() { fuse += timed(mp) })
		if drop {
			dropDentries(b)
			nativeDrop += timed(src)
			mounted(func() {
				dropDentries(b)
				fuseDrop += timed(mp)
			})
		}
		iters++
	}
	b.ReportMetric(float64(native.Nanoseconds())/float64(iters), "native-warm-ns/op")
	b.ReportMetric(float64(fuse)/float64(native), "cold-mount/native-warm")
	if drop {
		b.ReportMetric(float64(nativeDrop.Nanoseconds())/float64(iters), "native-cold-ns/op")
		b.ReportMetric(float64(fuseDrop)/float64(nativeDrop), "cold-mount+dcache/native-cold")
	}
}
