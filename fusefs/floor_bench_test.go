//go:build linux

package fusefs

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// The floor of a first read through FUSE on this machine: what a FUSE
// server that does no work at all costs, against the same reads of files
// in the page cache natively and through this package (accounting
// "reads"). The floor server (floorFS) answers every request from memory:
// no backing file, no accounting, no lookup of its own. Whatever it costs
// over native is the price of the kernel's round trip and of go-fuse, and
// no daemon serving reads can go below it.
//
// Two reads, each timed in a child process (see readTreeElsewhere) on a
// fresh mount, the names already looked up (as after a listing) so that
// only the reads cross FUSE:
//   - small: open, read and close FUSEFS_BENCH_FILES (default 16,000)
//     files of 4 KiB, one READ each;
//   - big: read one file of FUSEFS_BENCH_FILE_SIZE (default 512 MiB) in
//     1 MiB read(2)s, READs of 1 MiB.

const floorSmallSize = 4 << 10

// floorFS is a read-only root directory of files f-0 … f-(n-1) of
// floorSmallSize bytes and "big" of bigSize bytes, all zero bytes, served
// from memory. Node IDs: 1 the root, 2 "big", 3+i the file f-i.
type floorFS struct {
	fuse.RawFileSystem
	n       int
	bigSize int64
	zero    []byte
}

func (f *floorFS) attr(id uint64, a *fuse.Attr) bool {
	switch {
	case id == fuse.FUSE_ROOT_ID:
		a.Mode = fuse.S_IFDIR | 0o755
		a.Nlink = 2
	case id == 2:
		a.Mode = fuse.S_IFREG | 0o644
		a.Size = uint64(f.bigSize)
		a.Nlink = 1
	case id >= 3 && id < uint64(3+f.n):
		a.Mode = fuse.S_IFREG | 0o644
		a.Size = floorSmallSize
		a.Nlink = 1
	default:
		return false
	}
	a.Ino = id
	return true
}

func (f *floorFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	id := uint64(0)
	if name == "big" {
		id = 2
	} else if s, ok := strings.CutPrefix(name, "f-"); ok {
		if i, err := strconv.Atoi(s); err == nil && i >= 0 && i < f.n {
			id = uint64(3 + i)
		}
	}
	if h.NodeId != fuse.FUSE_ROOT_ID || id == 0 {
		return fuse.ENOENT
	}
	out.NodeId = id
	f.attr(id, &out.Attr)
	out.SetEntryTimeout(time.Hour)
	out.SetAttrTimeout(time.Hour)
	return fuse.OK
}

func (f *floorFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if !f.attr(in.NodeId, &out.Attr) {
		return fuse.ENOENT
	}
	out.SetTimeout(time.Hour)
	return fuse.OK
}

// Open answers ENOSYS: the kernel then opens files without asking, as on
// a mount of this package in accounting "reads".
func (f *floorFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.ENOSYS
}

// Flush answers ENOSYS: the kernel then sends no FLUSH at close, as on a
// mount of this package.
func (f *floorFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}

func (f *floorFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	var a fuse.Attr
	if !f.attr(in.NodeId, &a) || a.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fuse.EINVAL
	}
	n := min(int64(in.Size), max(0, int64(a.Size)-int64(in.Offset)))
	return fuse.ReadResultData(f.zero[:n]), fuse.OK
}

// mountFloor mounts a floorFS at a new mountpoint with the request sizes
// and readahead of a mount of this package that serves reads.
func mountFloor(b testing.TB, n int, bigSize int64, what string) string {
	base := b.TempDir()
	sweepMounts(b, base)
	mp := filepath.Join(base, "floor")
	if err := os.Mkdir(mp, 0o755); err != nil {
		b.Fatal(err)
	}
	fsys := &floorFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), n: n, bigSize: bigSize, zero: make([]byte, maxReadReply)}
	opts := &fuse.MountOptions{
		FsName: "floor", Name: "floor", AllowOther: true, DirectMount: true,
		Options: []string{"ro"}, MaxWrite: maxReadReply, DisableSplice: true,
	}
	if what == "small" {
		// A READ of a small file fits in a request buffer of
		// smallMaxWrite, as on this package's mounts: with 1 MiB
		// buffers each request would touch more memory.
		opts.MaxWrite = smallMaxWrite
	}
	srv, err := fuse.NewServer(fsys, mp, opts)
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		b.Fatal(err)
	}
	if err := setReadahead(mp, readaheadKiB); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Unmount() })
	return mp
}

// floorSource writes the same files as a floorFS into a directory, for the
// native side and for a mount of this package.
func floorSource(b testing.TB, n int, bigSize int64) string {
	dir := b.TempDir()
	small := make([]byte, floorSmallSize)
	for i := range n {
		if err := os.WriteFile(filepath.Join(dir, "f-"+strconv.Itoa(i)), small, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, maxReadReply)
	for off := int64(0); off < bigSize; off += int64(len(chunk)) {
		if _, err := f.Write(chunk[:min(int64(len(chunk)), bigSize-off)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	// Both reads below must find the source in the page cache.
	readFloorElsewhere(b, dir, "small", n)
	readFloorElsewhere(b, dir, "big", n)
	return dir
}

// readFloorElsewhere runs TestHelperReadFloor on dir in a child process
// and returns the time its timed part took.
func readFloorElsewhere(b testing.TB, dir, what string, n int) time.Duration {
	return inChild(b, "TestHelperReadFloor", "FUSEFS_FLOOR_DIR="+dir, "FUSEFS_FLOOR_READ="+what, "FUSEFS_FLOOR_FILES="+strconv.Itoa(n))
}

// TestHelperReadFloor is readFloorElsewhere's child: not a test on its
// own. It lstats every name first (untimed), then times the reads.
func TestHelperReadFloor(t *testing.T) {
	dir := os.Getenv("FUSEFS_FLOOR_DIR")
	if dir == "" {
		t.Skip("the child process of readFloorElsewhere")
	}
	n, err := strconv.Atoi(os.Getenv("FUSEFS_FLOOR_FILES"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, maxReadReply)
	var start time.Time
	switch os.Getenv("FUSEFS_FLOOR_READ") {
	case "small":
		names := make([]string, n)
		for i := range names {
			names[i] = filepath.Join(dir, "f-"+strconv.Itoa(i))
			if _, err := os.Lstat(names[i]); err != nil {
				t.Fatal(err)
			}
		}
		start = time.Now()
		for _, p := range names {
			got, err := readWhole(p, buf)
			if err != nil || got != floorSmallSize {
				t.Fatalf("read %s: %d bytes, %v", p, got, err)
			}
		}
	case "big":
		p := filepath.Join(dir, "big")
		if _, err := os.Lstat(p); err != nil {
			t.Fatal(err)
		}
		start = time.Now()
		if _, err := readWhole(p, buf); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatal("FUSEFS_FLOOR_READ: want small or big")
	}
	fmt.Printf("elapsed-ns %d\n", time.Since(start).Nanoseconds())
}

// readWhole reads the file at p to its end in reads of len(buf) bytes.
func readWhole(p string, buf []byte) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var tot int64
	for {
		k, err := f.Read(buf)
		tot += int64(k)
		if err == io.EOF {
			return tot, nil
		}
		if err != nil {
			return tot, err
		}
	}
}

// BenchmarkReadFloor times the first small-file and big-file reads
// natively, through a floorFS and through a fresh mount of this package
// (accounting "reads"), each iteration all three in turn on fresh mounts,
// and reports the times and the ratios to native.
func BenchmarkReadFloor(b *testing.B) {
	requireFUSE(b)
	n := int(envIntTB(b, "FUSEFS_BENCH_FILES", 16000))
	bigSize := envIntTB(b, "FUSEFS_BENCH_FILE_SIZE", 512<<20)
	src := floorSource(b, n, bigSize)
	for _, what := range []string{"small", "big"} {
		b.Run(what, func(b *testing.B) {
			var native, floor, ours time.Duration
			iters := 0
			for b.Loop() {
				native += readFloorElsewhere(b, src, what, n)
				floor += readFloorElsewhere(b, mountFloor(b, n, bigSize, what), what, n)
				_, mp, _ := mountLayer(b, src)
				ours += readFloorElsewhere(b, mp, what, n)
				iters++
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(iters) / 1000 }
			b.ReportMetric(ms(native), "native-ms")
			b.ReportMetric(ms(floor), "floor-ms")
			b.ReportMetric(ms(ours), "fuse-reads-ms")
			b.ReportMetric(float64(floor)/float64(native), "floor/native")
			b.ReportMetric(float64(ours)/float64(native), "fuse-reads/native")
		})
	}
}
