//go:build linux

package fusefs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// BenchmarkMountMemory mounts N tiny layers with one Manager, as the
// daemon does (WithoutSelfAccess), and reports what each mounted layer
// costs the process: resident memory (VmRSS after a GC and returning freed
// memory to the OS), Go heap in use, goroutines and OS threads, and how
// long a Mount takes with N layers already mounted (the mean over the last
// tenth). Every accounting mode.
//
//	FUSEFS_BENCH_MEM_PROFILE=DIR  also writes DIR/heap-<mode>-<n>.pprof
//
// Run: go test -run '^$' -bench MountMemory -benchtime 1x ./fusefs/
func BenchmarkMountMemory(b *testing.B) {
	for _, mode := range []Accounting{AccountReads, AccountOpen, AccountBytes} {
		for _, n := range []int{200, 1000} {
			b.Run(fmt.Sprintf("%s/layers=%d", mode, n), func(b *testing.B) {
				for range b.N {
					benchMountMemory(b, mode, n)
				}
			})
		}
	}
}

func benchMountMemory(b *testing.B, mode Accounting, n int) {
	requireFUSE(b)
	base := b.TempDir()
	sweepMounts(b, base)
	src := dirSource{}
	layers := make([]digest.Digest, n)
	for i := range n {
		dir := filepath.Join(base, "layers", strconv.Itoa(i))
		writeFile(b, dir, ".cvmfscatalog", "")
		writeFile(b, dir, "etc/hostname", "layer "+strconv.Itoa(i)+"\n")
		layers[i] = testDigest(fmt.Sprintf("mem-layer-%d", i))
		src[layers[i]] = dir
		if err := os.MkdirAll(filepath.Join(base, "mnt", strconv.Itoa(i)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	m, err := NewManager(src, WithAccounting(mode), WithoutSelfAccess())
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := m.Close(context.Background()); err != nil {
			b.Errorf("close: %v", err)
		}
	}()

	before := memSample(b)
	ctx := context.Background()
	var last time.Duration // the mean Mount time over the last tenth
	tail := max(n/10, 1)
	start := time.Now()
	for i, layer := range layers {
		if i == n-tail {
			start = time.Now()
		}
		if err := m.Mount(ctx, filepath.Join(base, "mnt", strconv.Itoa(i)), layer); err != nil {
			b.Fatal(err)
		}
	}
	last = time.Since(start) / time.Duration(tail)
	// Some traffic on every mount, from another process (this one never
	// touches its own mounts, as the daemon): requests recycle go-fuse's
	// buffers, which is when they become resident. Twice, with a GC in
	// between that empties the buffer pools.
	files := make([]string, n)
	for i := range n {
		files[i] = filepath.Join(base, "mnt", strconv.Itoa(i), "etc", "hostname")
	}
	for range 2 {
		if out, err := exec.Command("cat", files...).CombinedOutput(); err != nil {
			b.Fatalf("cat through the mounts: %v: %.200s", err, out)
		}
		runtime.GC()
	}
	after := memSample(b)

	per := func(a, z int64) float64 { return float64(z-a) / float64(n) }
	b.ReportMetric(float64(after.rss)/(1<<20), "MB-rss-total")
	b.ReportMetric(per(before.rss, after.rss)/1024, "KB-rss/layer")
	b.ReportMetric(per(before.heap, after.heap)/1024, "KB-heap/layer")
	b.ReportMetric(per(before.goroutines, after.goroutines), "goroutines/layer")
	b.ReportMetric(per(before.threads, after.threads), "threads/layer")
	b.ReportMetric(float64(last.Microseconds())/1000, "ms/mount-at-end")
	b.Logf("%s, %d layers: RSS %d -> %d KiB, heap %d -> %d KiB, goroutines %d -> %d, threads %d -> %d, Mount %v each at the end",
		mode, n, before.rss>>10, after.rss>>10, before.heap>>10, after.heap>>10,
		before.goroutines, after.goroutines, before.threads, after.threads, last)

	if dir := os.Getenv("FUSEFS_BENCH_MEM_PROFILE"); dir != "" {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%s-%d.pprof", mode, n)))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// memStat is one sample of the process's memory.
type memStat struct {
	rss, heap, goroutines, threads int64
}

// memSample collects garbage, returns freed memory to the OS and samples.
func memSample(b *testing.B) memStat {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := memStat{heap: int64(ms.HeapInuse), goroutines: int64(runtime.NumGoroutine())}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var v int64
		if _, err := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &v); err == nil {
			st.rss = v << 10
		} else if _, err := fmt.Sscanf(sc.Text(), "Threads: %d", &v); err == nil {
			st.threads = v
		}
	}
	return st
}
