//go:build linux

package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// What a container's Python, ROOT or shared-library loading does: open and
// read thousands of small files through overlayfs stacked on many layers.
// Layers: FUSEFS_BENCH_LAYERS (default 20) of FUSEFS_BENCH_LAYER_FILES
// (default 800) 4 KiB files, half of them in directories every layer
// shares (overlayfs merges those and looks each name up layer by layer),
// half in a directory of the layer's own.

// smallFileLayers writes the layers and returns their directories, top
// layer first (overlayfs' lowerdir order), and the number of files.
func smallFileLayers(b testing.TB) ([]string, int) {
	layers := int(envIntTB(b, "FUSEFS_BENCH_LAYERS", 20))
	per := int(envIntTB(b, "FUSEFS_BENCH_LAYER_FILES", 800))
	content := bytes.Repeat([]byte("0123456789abcdef"), 256)
	base := b.TempDir()
	dirs := make([]string, layers)
	for l := range layers {
		dirs[layers-1-l] = filepath.Join(base, "layer"+strconv.Itoa(l))
		for i := range per {
			rel := fmt.Sprintf("own%d/d%d/f%d", l, i%8, i)
			if i%2 == 0 {
				rel = fmt.Sprintf("usr/lib/d%d/l%d-f%d.py", i%8, l, i)
			}
			p := filepath.Join(dirs[layers-1-l], rel)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dirs[layers-1-l], ".cvmfscatalog"), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dirs, layers * per
}

// readTree opens and reads every regular file below root, as a process
// loading modules does, and checks it found want of them.
func readTree(b testing.TB, root string, want int) {
	buf := make([]byte, 64<<10)
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || d.Name() == ".cvmfscatalog" {
			return err // the catalog marker: hidden by FUSE, not natively
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
			return err
		}
		files++
		return nil
	})
	if err != nil || files != want {
		b.Fatalf("read %s: %d files, %v; want %d", root, files, err, want)
	}
}

// readTreeElsewhere runs readTree on root in a child process (this test
// binary, see TestHelperReadTree) and returns the time it took there. The
// reader must not be the FUSE server's process: a Go process reading its
// own FUSE mounts waits on its own scheduler (the reading thread holds a P
// in the syscall while the server's goroutines need one), which no
// container workload does.
func readTreeElsewhere(b testing.TB, root string, want int) time.Duration {
	return inChild(b, "TestHelperReadTree", "FUSEFS_READ_TREE="+root, "FUSEFS_READ_TREE_WANT="+strconv.Itoa(want))
}

// inChild runs the helper test named helper of this test binary in a child
// process with env added, and returns the time the child reported
// ("elapsed-ns N").
func inChild(b testing.TB, helper string, env ...string) time.Duration {
	cmd := exec.Command(os.Args[0], "-test.run=^"+helper+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s in a child: %v\n%s", helper, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if ns, ok := strings.CutPrefix(line, "elapsed-ns "); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(ns), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return time.Duration(v)
		}
	}
	b.Fatalf("%s: the child printed no time:\n%s", helper, out)
	return 0
}

// TestHelperReadTree is readTreeElsewhere's child: not a test on its own.
func TestHelperReadTree(t *testing.T) {
	root := os.Getenv("FUSEFS_READ_TREE")
	if root == "" {
		t.Skip("the child process of readTreeElsewhere")
	}
	want, err := strconv.Atoi(os.Getenv("FUSEFS_READ_TREE_WANT"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	readTree(t, root, want)
	fmt.Printf("elapsed-ns %d\n", time.Since(start).Nanoseconds())
}

// overlayStack is one overlay mount over the layers, natively or through
// fresh FUSE mounts of a new Manager.
type overlayStack struct {
	merged string
	m      *Manager
	mps    []string
	base   string
	lowers []string
	n      int // overlays mounted so far
}

func mountStack(b testing.TB, base string, layers []string, opts []Opt) *overlayStack {
	ctx := context.Background()
	s := &overlayStack{}
	lowers := layers
	if opts != nil {
		m, err := NewManager(layerSource(layers), opts...)
		if err != nil {
			b.Fatal(err)
		}
		s.m = m
		lowers = nil
		for i, l := range layers {
			mp := filepath.Join(base, "fuse"+strconv.Itoa(i))
			if err := os.MkdirAll(mp, 0o755); err != nil {
				b.Fatal(err)
			}
			if err := m.Mount(ctx, mp, testDigest(l)); err != nil {
				b.Fatal(err)
			}
			s.mps = append(s.mps, mp)
			lowers = append(lowers, mp)
		}
	}
	s.base, s.lowers = base, lowers
	s.mountOverlay(b)
	return s
}

// mountOverlay mounts a new overlay over the stack's lower layers with a
// fresh upper and work directory, as each new container gets.
func (s *overlayStack) mountOverlay(b testing.TB) {
	s.n++
	s.merged = filepath.Join(s.base, "merged"+strconv.Itoa(s.n))
	upper, work := filepath.Join(s.base, "upper"+strconv.Itoa(s.n)), filepath.Join(s.base, "work"+strconv.Itoa(s.n))
	for _, d := range []string{s.merged, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	data := "lowerdir=" + strings.Join(s.lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", s.merged, "overlay", 0, data); err != nil {
		testutil.Skip(b, "cannot mount overlay: %v", err)
	}
}

// newContainer replaces the stack's overlay with a new one over the same
// lower layers: what the next container of the same image sees (the FUSE
// mounts and their kernel caches stay, the overlay's own caches are new).
func (s *overlayStack) newContainer(b testing.TB) {
	if err := unix.Unmount(s.merged, 0); err != nil {
		b.Fatal(err)
	}
	s.mountOverlay(b)
}

func (s *overlayStack) unmount(b testing.TB) {
	if err := unix.Unmount(s.merged, 0); err != nil {
		b.Fatal(err)
	}
	if s.m != nil {
		if err := s.m.Close(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// layerSource serves each directory as the layer testDigest(dir).
type layerSource []string

func (s layerSource) OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error) {
	for _, d := range s {
		if testDigest(d) == layer {
			return openDirPath(d)
		}
	}
	return nil, os.ErrNotExist
}

// overlayVariants are the ways of serving the lower layers: natively (as
// containerd's overlayfs snapshotter does) and through this package.
var overlayVariants = []struct {
	name string
	opts []Opt
}{
	{"native", nil},
	{"fuse-reads", []Opt{}},
	{"fuse-open", []Opt{WithAccounting(AccountOpen)}},
	{"fuse-bytes", []Opt{WithAccounting(AccountBytes)}},
}

// BenchmarkOverlaySmallFiles reads (in a child process) every file of the stacked layers
// through overlayfs, per variant: "cold" on fresh mounts (a container's
// first run after the pull: the overlay and FUSE caches are empty, the
// layers' own files are in the page cache on both sides), "warm" on the
// second pass, "next" on a new overlay after one pass (the next container
// of the same image). With FUSEFS_BENCH_DROP_CACHES=1 the kernel's page, dentry
// and inode caches are dropped before every pass too, on both sides. Each
// iteration times every variant in turn and reports its time per pass and
// its ratio to native; FUSEFS_BENCH_VARIANTS (e.g. "native,fuse-reads")
// runs only the variants it lists.
func BenchmarkOverlaySmallFiles(b *testing.B) {
	requireFUSE(b)
	layers, n := smallFileLayers(b)
	drop := os.Getenv("FUSEFS_BENCH_DROP_CACHES") == "1"
	for _, temp := range []string{"cold", "warm", "next"} {
		b.Run(temp, func(b *testing.B) {
			tot := make([]time.Duration, len(overlayVariants))
			iters := 0
			for b.Loop() {
				for i, v := range overlayVariants {
					if !overlayVariantOn(v.name) {
						continue
					}
					base := b.TempDir()
					sweepMounts(b, base)
					s := mountStack(b, base, layers, v.opts)
					if drop {
						dropCaches(b)
					}
					if temp != "cold" {
						readTreeElsewhere(b, s.merged, n)
						if m := s.m; m != nil {
							waitWalks(m)
						}
					}
					if temp == "next" {
						s.newContainer(b)
					}
					tot[i] += readTreeElsewhere(b, s.merged, n)
					s.unmount(b)
				}
				iters++
			}
			for i, v := range overlayVariants {
				if !overlayVariantOn(v.name) {
					continue
				}
				b.ReportMetric(float64(tot[i].Microseconds())/float64(iters)/1000, v.name+"-ms")
				if i > 0 && overlayVariantOn("native") {
					b.ReportMetric(float64(tot[i])/float64(tot[0]), v.name+"/native")
				}
			}
		})
	}
}

// overlayVariantOn reports whether the overlay variant name is to run:
// FUSEFS_BENCH_VARIANTS lists them (comma-separated; all when unset).
func overlayVariantOn(name string) bool {
	only := os.Getenv("FUSEFS_BENCH_VARIANTS")
	return only == "" || slices.Contains(strings.Split(only, ","), name)
}

// envIntTB is envInt for tests and benchmarks alike.
func envIntTB(tb testing.TB, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		tb.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// dropCaches drops the page cache, dentries and inodes.
func dropCaches(b testing.TB) {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		b.Fatal(err)
	}
}

// opcodeCounter counts go-fuse's debug lines ("rx N: OPCODE ...") by
// opcode.
type opcodeCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func newOpcodeCounter() *opcodeCounter { return &opcodeCounter{n: map[string]int{}} }

// count returns the requests of opcode op counted so far.
func (c *opcodeCounter) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

func (c *opcodeCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, line := range bytes.Split(p, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("rx "))
		if !ok {
			continue
		}
		if _, after, ok := bytes.Cut(rest, []byte(": ")); ok {
			op, _, _ := bytes.Cut(after, []byte(" "))
			c.n[string(op)]++
			if string(op) == "GETXATTR" {
				if i := bytes.IndexByte(after, '"'); i >= 0 {
					name, _, _ := bytes.Cut(after[i+1:], []byte{'"'})
					c.n["GETXATTR:"+string(name)]++
				}
			}
		}
	}
	return len(p), nil
}

// TestOverlaySmallFilesOpcodes is a census, not a check: the FUSE requests
// per file that a cold and a warm read of the stacked layers cost, by
// opcode (run with FUSEFS_OPCODES=1 -v). It shows where the time of
// BenchmarkOverlaySmallFiles goes.
func TestOverlaySmallFilesOpcodes(t *testing.T) {
	if os.Getenv("FUSEFS_OPCODES") != "1" {
		t.Skip("a census for people, not a check: FUSEFS_OPCODES=1 runs it")
	}
	requireFUSE(t)
	layers, n := smallFileLayers(t)
	var out strings.Builder
	c := newOpcodeCounter()
	for _, v := range overlayVariants[1:] {
		base := t.TempDir()
		sweepMounts(t, base)
		s := mountStack(t, base, layers, append(slices.Clone(v.opts), withRequestLog(c)))
		dropCaches(t)
		for _, pass := range []string{"cold", "warm", "next"} {
			if pass == "next" {
				waitWalks(s.m)
				s.newContainer(t)
			}
			c.mu.Lock()
			clear(c.n)
			c.mu.Unlock()
			readTree(t, s.merged, n)
			c.mu.Lock()
			ops := make([]string, 0, len(c.n))
			for op := range c.n {
				ops = append(ops, op)
			}
			slices.Sort(ops)
			fmt.Fprintf(&out, "%s %s pass, %d files:", v.name, pass, n)
			for _, op := range ops {
				fmt.Fprintf(&out, " %s=%.2f", op, float64(c.n[op])/float64(n))
			}
			out.WriteString(" (per file)\n")
			c.mu.Unlock()
		}
		s.unmount(t)
	}
	t.Log("\n" + out.String())
}

// BenchmarkNegativeLookup is the floor of a cold start through FUSE: the
// time of one lookup round trip that the daemon answers with no work (a
// name absent from a directory already listed), measured as a child
// process's lstat of distinct absent names, against the same lstats on
// the backing directory. A cold read of a small file through overlayfs on
// N layers costs about N/2 such round trips more than natively, whatever
// the server does.
func BenchmarkNegativeLookup(b *testing.B) {
	requireFUSE(b)
	const names = 20000
	src := b.TempDir()
	writeFile(b, src, "d/present", "p")
	var tot [2]time.Duration
	iters := 0
	for b.Loop() {
		_, mp, _ := mountLayer(b, src)
		if _, err := os.ReadDir(filepath.Join(mp, "d")); err != nil { // a listing, kept by the node
			b.Fatal(err)
		}
		for i, dir := range []string{filepath.Join(src, "d"), filepath.Join(mp, "d")} {
			tot[i] += statAbsentElsewhere(b, dir, names, iters)
		}
		iters++
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(iters*names) }
	b.ReportMetric(per(tot[0]), "native-ns/lookup")
	b.ReportMetric(per(tot[1]), "fuse-ns/lookup")
}

// statAbsentElsewhere lstats n distinct absent names in dir from a child
// process (see readTreeElsewhere) and returns the time it took there.
func statAbsentElsewhere(b testing.TB, dir string, n, round int) time.Duration {
	return inChild(b, "TestHelperStatAbsent", "FUSEFS_STAT_ABSENT="+dir, "FUSEFS_STAT_ABSENT_N="+strconv.Itoa(n), "FUSEFS_STAT_ABSENT_ROUND="+strconv.Itoa(round))
}

// TestHelperStatAbsent is statAbsentElsewhere's child: not a test on its own.
func TestHelperStatAbsent(t *testing.T) {
	dir := os.Getenv("FUSEFS_STAT_ABSENT")
	if dir == "" {
		t.Skip("the child process of statAbsentElsewhere")
	}
	n, err := strconv.Atoi(os.Getenv("FUSEFS_STAT_ABSENT_N"))
	if err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(dir, "absent-"+os.Getenv("FUSEFS_STAT_ABSENT_ROUND")+"-")
	var st unix.Stat_t
	start := time.Now()
	for i := range n {
		if err := unix.Lstat(prefix+strconv.Itoa(i), &st); err != unix.ENOENT {
			t.Fatalf("lstat of an absent name: %v", err)
		}
	}
	fmt.Printf("elapsed-ns %d\n", time.Since(start).Nanoseconds())
}
