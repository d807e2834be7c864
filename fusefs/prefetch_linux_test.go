//go:build linux

package fusefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// layerStats returns the one layer's accounting of m.
func layerStats(t *testing.T, m *Manager) usage.LayerStats {
	t.Helper()
	st := statsOf(t, m)
	if len(st) != 1 {
		t.Fatalf("stats of %d layers, want 1", len(st))
	}
	return st[0]
}

// waitPrefetched waits until prefetch has read files files.
func waitPrefetched(t *testing.T, m *Manager, files int64) usage.LayerStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := layerStats(t, m)
		if st.PrefetchFiles >= files {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch read %d files, want %d", st.PrefetchFiles, files)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPrefetch: the first mount of a layer reads the files its profile
// names from the layer store, skipping paths that are not clean and
// relative, without counting them as workload reads; a workload's later
// read of one of them counts as a hit.
func TestPrefetch(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "a", "aaaa")
	writeFile(t, src, "b/c", strings.Repeat("c", 100))
	writeFile(t, src, "d", "dd")
	if err := os.WriteFile(filepath.Join(filepath.Dir(src), "outside"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	asked := make(chan digest.Digest, 1)
	profile := func(ctx context.Context, layer digest.Digest) ([]string, error) {
		asked <- layer
		return []string{"b/c", "a", "../outside", "/etc/passwd", "b/../a", "missing", "b"}, nil
	}
	m, mp, layer := mountLayer(t, src, WithPrefetch(profile, 2, 1<<20))
	if got := <-asked; got != layer {
		t.Fatalf("profile asked for %s, want %s", got, layer)
	}
	st := waitPrefetched(t, m, 2)
	time.Sleep(50 * time.Millisecond) // anything else it would read
	st = layerStats(t, m)
	if st.PrefetchFiles != 2 || st.PrefetchBytes != 104 {
		t.Fatalf("prefetch read %d files, %d bytes; want b/c and a: 2 files, 104 bytes", st.PrefetchFiles, st.PrefetchBytes)
	}
	if st.Opens != 0 || st.BytesRead != 0 || st.Reads != 0 || st.PrefetchHits != 0 {
		t.Fatalf("prefetch counted as workload reads: %+v", st)
	}
	for _, name := range []string{"a", "d"} {
		if _, err := os.ReadFile(filepath.Join(mp, name)); err != nil {
			t.Fatal(err)
		}
	}
	st = layerStats(t, m)
	if st.PrefetchHits != 1 || st.BytesRead != 6 {
		t.Fatalf("after reading a (prefetched) and d: hits %d, bytes read %d; want 1 hit, 6 bytes", st.PrefetchHits, st.BytesRead)
	}
}

// TestPrefetchBounded: prefetch stops at its byte budget.
func TestPrefetchBounded(t *testing.T) {
	src := t.TempDir()
	var names []string
	for _, n := range []string{"f1", "f2", "f3", "f4"} {
		writeFile(t, src, n, strings.Repeat("x", 1000))
		names = append(names, n)
	}
	profile := func(ctx context.Context, layer digest.Digest) ([]string, error) { return names, nil }
	m, _, _ := mountLayer(t, src, WithPrefetch(profile, 1, 1500))
	waitPrefetched(t, m, 2)
	time.Sleep(50 * time.Millisecond)
	if st := layerStats(t, m); st.PrefetchFiles != 2 {
		t.Fatalf("prefetch read %d files with a budget of 1500 bytes over files of 1000, want 2", st.PrefetchFiles)
	}
}

// pageReaderEnv makes this test binary, re-executed, run RunPageReader.
const pageReaderEnv = "FUSEFS_TEST_PAGE_READER"

// TestPrefetchPages: with WithPrefetchPages and accounting "reads",
// prefetch reads the profiled files through the mount, and lists the
// directories on their way, from a helper process, without counting any
// of its requests; the files' entries, pages and listings are then in the
// kernel's caches of the mount, so a workload's later walk and reads of
// them send nothing to the daemon. Files the profile does not name are
// read and counted as usual. Paths that are not clean and relative, or
// lead through a link, are not read.
func TestPrefetchPages(t *testing.T) {
	src := t.TempDir()
	var names []string
	for i := range 20 {
		name := fmt.Sprintf("d%d/f%d", i%3, i)
		writeFile(t, src, name, strings.Repeat("x", 5000+i))
		names = append(names, name)
	}
	writeFile(t, src, "other", "not in the profile")
	if err := os.Symlink("/etc", filepath.Join(src, "etc")); err != nil {
		t.Fatal(err)
	}
	profile := func(ctx context.Context, layer digest.Digest) ([]string, error) {
		return append([]string{"../outside", "etc/passwd", "missing"}, names...), nil
	}
	t.Setenv(pageReaderEnv, "1")
	m, mp, _ := mountLayer(t, src, WithAccounting(AccountReads), WithPrefetch(profile, 2, 1<<20), WithPrefetchPages([]string{os.Args[0], "-test.run=^$"}))
	st := waitPrefetched(t, m, int64(len(names)))
	time.Sleep(50 * time.Millisecond) // anything else it would read
	st = layerStats(t, m)
	if st.PrefetchFiles != int64(len(names)) {
		t.Fatalf("prefetch read %d files, want the %d regular files of the profile", st.PrefetchFiles, len(names))
	}
	if st.Reads != 0 || st.Opens != 0 || st.BytesRead != 0 || st.Lookups != 0 || st.Readdirs != 0 || st.Absent != 0 || len(profileOf(t, m, st.Layer)) != 0 {
		t.Fatalf("prefetch through the mount counted as workload requests: %+v", st)
	}
	for _, dir := range []string{"", "d0", "d1", "d2"} {
		if _, err := os.ReadDir(filepath.Join(mp, dir)); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(mp, name))
		if err != nil || len(b) != 5000+i {
			t.Fatalf("read %s: %d bytes, %v", name, len(b), err)
		}
	}
	if st := layerStats(t, m); st.Reads != 0 || st.Lookups != 0 || st.Readdirs != 0 {
		t.Fatalf("a walk and reads of prefetched files sent %d READs, %d LOOKUPs and %d directory reads to the daemon, want none (their pages, entries and listings were not cached)", st.Reads, st.Lookups, st.Readdirs)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "other")); err != nil || string(b) != "not in the profile" {
		t.Fatalf("read other: %q, %v", b, err)
	}
	if st := layerStats(t, m); st.Reads != 1 || st.BytesRead != int64(len("not in the profile")) {
		t.Fatalf("a workload's read of a file not prefetched: %d READs, %d bytes counted; want 1, %d", st.Reads, st.BytesRead, len("not in the profile"))
	}
}

// TestPrefetchPagesRemount: a layer mounted again (a new connection, with
// caches of its own, maybe under the same device number) has its
// directories listed again by the page reader, so that a walk of the new
// mount sends no directory read either.
func TestPrefetchPagesRemount(t *testing.T) {
	src := t.TempDir()
	var names []string
	for i := range 6 {
		name := fmt.Sprintf("d%d/f%d", i%2, i)
		writeFile(t, src, name, "x")
		names = append(names, name)
	}
	profile := func(ctx context.Context, layer digest.Digest) ([]string, error) { return names, nil }
	t.Setenv(pageReaderEnv, "1")
	m, mp, layer := mountLayer(t, src, WithAccounting(AccountReads), WithPrefetch(profile, 2, 1<<20), WithPrefetchPages([]string{os.Args[0], "-test.run=^$"}))
	waitPrefetched(t, m, int64(len(names)))
	ctx := context.Background()
	for i := range 3 {
		if err := m.Unmount(ctx, mp); err != nil {
			t.Fatal(err)
		}
		if err := m.Mount(ctx, mp, layer); err != nil {
			t.Fatal(err)
		}
		waitPrefetched(t, m, int64(len(names)))
		time.Sleep(50 * time.Millisecond)
		for _, dir := range []string{"d0", "d1"} {
			if _, err := os.ReadDir(filepath.Join(mp, dir)); err != nil {
				t.Fatal(err)
			}
		}
		if st := layerStats(t, m); st.Readdirs != 0 {
			t.Fatalf("mount %d: a walk after prefetch sent %d directory reads to the daemon, want 0", i+2, st.Readdirs)
		}
	}
}

// TestPrefetchWorkersBounded: prefetch runs of many layers at once share
// prefetch-concurrency workers: the OS threads they hold (each worker
// keeps one, at the lowest priority) do not grow with the layers.
func TestPrefetchWorkersBounded(t *testing.T) {
	const layers, concurrency = 16, 2
	release := make(chan struct{})
	var blocked atomic.Int32
	hook := func() {
		blocked.Add(1)
		<-release
	}
	prefetchTestHook.Store(&hook)
	t.Cleanup(func() { prefetchTestHook.Store(nil) })
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	start := make(chan struct{})
	profile := func(ctx context.Context, layer digest.Digest) ([]string, error) {
		select {
		case <-start:
		case <-ctx.Done():
		}
		return []string{"a", "b", "c", "d"}, nil
	}
	requireFUSE(t)
	base := t.TempDir()
	sweepMounts(t, base)
	src := dirSource{}
	m, err := NewManager(src, WithPrefetch(profile, concurrency, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	var digests []digest.Digest
	for i := range layers {
		dir := t.TempDir()
		for _, n := range []string{"a", "b", "c", "d"} {
			writeFile(t, dir, n, n)
		}
		d := testDigest(fmt.Sprintf("layer %d", i))
		src[d] = dir
		digests = append(digests, d)
	}
	for i, d := range digests {
		mp := filepath.Join(base, fmt.Sprintf("mnt%d", i))
		if err := os.Mkdir(mp, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := m.Mount(context.Background(), mp, d); err != nil {
			t.Fatal(err)
		}
	}
	// The mounts' FUSE readers start their threads as they go: wait
	// until the count settles.
	before := osThreads(t)
	for i := 0; i < 50; i++ {
		time.Sleep(20 * time.Millisecond)
		now := osThreads(t)
		if now == before && i >= 5 {
			break
		}
		before = now
	}
	close(start)
	deadline := time.Now().Add(10 * time.Second)
	for blocked.Load() < concurrency {
		if time.Now().After(deadline) {
			t.Fatalf("%d prefetch workers started, want %d", blocked.Load(), concurrency)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // any other worker would start too
	after := osThreads(t)
	if n := blocked.Load(); n != concurrency {
		t.Errorf("%d prefetch jobs run at once, want %d", n, concurrency)
	}
	// A thread per layer and worker would be layers*concurrency; the
	// runtime adds a few of its own (more with GOMAXPROCS=1, where
	// goroutines in syscalls make it start threads).
	t.Logf("prefetch of %d layers at concurrency %d: %d more OS threads", layers, concurrency, after-before)
	if after-before >= layers {
		t.Errorf("prefetch of %d layers took %d OS threads (from %d to %d), want about %d", layers, after-before, before, after, concurrency)
	}
	once.Do(func() { close(release) })
}

// osThreads returns the number of threads of this process.
func osThreads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads in /proc/self/status")
	return 0
}

// waitDirsQueued waits until no directory prefetch of m's one layer is
// queuing files.
func waitDirsQueued(t *testing.T, m *Manager) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		var p *prefetchState
		for _, ls := range m.layers {
			p = ls.acct.prefetch.Load()
		}
		m.mu.Unlock()
		p.mu.Lock()
		n := len(p.dirsQueuing)
		p.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d directories still queuing", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPrefetchDirectories: with WithDirectoryPrefetch and no profile, a
// workload's read of a file prefetch did not bring in has the files that
// follow it in its directory read from the layer store: 32 the first
// time, then 64 from the next such read, skipping what prefetch read or
// the workload read already, files over 1 MiB, whiteouts, other
// directories and subdirectories. None of it counts as a workload read.
func TestPrefetchDirectories(t *testing.T) {
	src := t.TempDir()
	for i := range 50 {
		writeFile(t, src, fmt.Sprintf("d/f%02d", i), "0123456789")
	}
	writeFile(t, src, "d/big", strings.Repeat("b", 2<<20))
	writeFile(t, src, "d/.wh.gone", "")
	writeFile(t, src, "d/sub/x", "x")
	writeFile(t, src, "e/g", "g")
	none := func(ctx context.Context, layer digest.Digest) ([]string, error) { return nil, nil }
	m, mp, _ := mountLayer(t, src, WithPrefetch(none, 2, 1<<30), WithDirectoryPrefetch())
	read := func(rel string) {
		t.Helper()
		if _, err := os.ReadFile(filepath.Join(mp, rel)); err != nil {
			t.Fatal(err)
		}
	}
	read("d/f00")
	waitPrefetched(t, m, 32)
	waitDirsQueued(t, m)
	if st := layerStats(t, m); st.PrefetchFiles != 32 || st.PrefetchBytes != 320 {
		t.Fatalf("after reading d/f00: prefetch read %d files, %d bytes; want d/f01 to d/f32: 32 files, 320 bytes", st.PrefetchFiles, st.PrefetchBytes)
	}
	read("d/f05") // prefetched: a hit, queues nothing
	read("d/f40") // not prefetched: queues d/f41 to d/f49, then (wrapping) d/f33 to d/f39
	waitPrefetched(t, m, 48)
	waitDirsQueued(t, m)
	time.Sleep(50 * time.Millisecond) // anything else it would read
	st := layerStats(t, m)
	if st.PrefetchFiles != 48 || st.PrefetchBytes != 480 {
		t.Fatalf("prefetch read %d files, %d bytes; want d/f01 to d/f49 but d/f40: 48 files, 480 bytes", st.PrefetchFiles, st.PrefetchBytes)
	}
	if st.PrefetchHits != 1 || st.Opens != 3 || st.BytesRead != 30 {
		t.Fatalf("workload: %d hits, %d opens, %d bytes read; want 1 hit (d/f05), 3 opens, 30 bytes", st.PrefetchHits, st.Opens, st.BytesRead)
	}
}
