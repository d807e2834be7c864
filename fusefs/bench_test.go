//go:build linux

package fusefs

import (
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// Benchmarks: sequential read of a large file, random
// 4 KiB reads, and a stat walk of a large tree, natively, through a
// read-only bind mount, through FUSE with passthrough ("open" accounting)
// and through FUSE in "bytes" and "reads" modes. Sizes can be shrunk by environment:
//
//	FUSEFS_BENCH_FILE_SIZE  bytes of the read file (default 1 GiB)
//	FUSEFS_BENCH_FILES      files in the walked tree (default 50000)
//	FUSEFS_BENCH_DROP_CACHES=1  also time walks with the kernel's dentry
//	                        and inode caches dropped (drop_caches=2)
//
// Run: go test -run '^$' -bench . -benchtime 2s ./fusefs/

func envInt(b *testing.B, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, s)
	}
	return v
}

// benchVariant is one way of reaching the same layer.
type benchVariant struct {
	name string
	dir  string
}

// variants returns src natively, bind-mounted and FUSE-mounted in every
// accounting mode. The FUSE passthrough variant is named after what the
// kernel granted.
func variants(b *testing.B, src string) []benchVariant {
	requireFUSE(b)
	base := b.TempDir()
	sweepMounts(b, base)
	bind := newDir(b, base, "bind")
	if err := unix.Mount(src, bind, "", unix.MS_BIND, ""); err != nil {
		b.Fatal(err)
	}
	if err := unix.Mount("", bind, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		b.Fatal(err)
	}
	mOpen, open, _ := mountLayer(b, src, WithAccounting(AccountOpen))
	openName := "fuse-passthrough"
	if s := statsOf(b, mOpen); len(s) != 1 || !s[0].Passthrough {
		openName = "fuse-open-NO-passthrough"
	}
	_, bytesMnt, _ := mountLayer(b, src, WithAccounting(AccountBytes))
	_, readsMnt, _ := mountLayer(b, src, WithAccounting(AccountReads))
	return []benchVariant{{"native", src}, {"bind", bind}, {openName, open}, {"fuse-bytes", bytesMnt}, {"fuse-reads", readsMnt}}
}

// bigFileLayer writes a layer holding one file of random bytes.
func bigFileLayer(b *testing.B) (src string, size int64) {
	size = envInt(b, "FUSEFS_BENCH_FILE_SIZE", 1<<30)
	src = b.TempDir()
	f, err := os.Create(filepath.Join(src, "big"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{})
	for left := size; left > 0; left -= int64(len(buf)) {
		r.Read(buf)
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			b.Fatal(err)
		}
	}
	return src, size
}

// readAll reads path to the end in reads of len(buf). (Not io.Copy to
// io.Discard: that reads in 8 KiB pieces, which measures syscalls.)
func readAll(b *testing.B, path string, buf []byte) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for {
		_, err := f.Read(buf)
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeqRead reads the whole file per op, warm (after one untimed
// read), and once through a fresh "bytes" and "reads" mount per op (the
// daemon serves every byte).
func BenchmarkSeqRead(b *testing.B) {
	src, size := bigFileLayer(b)
	buf := make([]byte, 1<<20)
	for _, v := range variants(b, src) {
		b.Run(v.name+"/warm", func(b *testing.B) {
			p := filepath.Join(v.dir, "big")
			readAll(b, p, buf)
			b.SetBytes(size)
			for b.Loop() {
				readAll(b, p, buf)
			}
		})
	}
	b.Run("fuse-bytes/cold-mount", func(b *testing.B) {
		b.SetBytes(size)
		coldLoop(b, src, WithAccounting(AccountBytes), func(mp string) { readAll(b, filepath.Join(mp, "big"), buf) })
	})
	b.Run("fuse-reads/cold-mount", func(b *testing.B) {
		b.SetBytes(size)
		coldLoop(b, src, WithAccounting(AccountReads), func(mp string) { readAll(b, filepath.Join(mp, "big"), buf) })
	})
}

// BenchmarkRandomRead reads 4 KiB at a random aligned offset per op, warm.
func BenchmarkRandomRead(b *testing.B) {
	src, size := bigFileLayer(b)
	for _, v := range variants(b, src) {
		b.Run(v.name, func(b *testing.B) {
			f, err := os.Open(filepath.Join(v.dir, "big"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			readAll(b, f.Name(), make([]byte, 1<<20))
			r := rand.New(rand.NewPCG(1, 2))
			buf := make([]byte, 4096)
			pages := size / 4096
			b.SetBytes(4096)
			for b.Loop() {
				if _, err := f.ReadAt(buf, r.Int64N(pages)*4096); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// treeLayer writes FUSEFS_BENCH_FILES small files in directories of 200.
func treeLayer(b *testing.B) (string, int64) {
	n := envInt(b, "FUSEFS_BENCH_FILES", 50_000)
	src := b.TempDir()
	for i := range n {
		dir := filepath.Join(src, "d"+strconv.FormatInt(i/200, 10))
		if i%200 == 0 {
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "f"+strconv.FormatInt(i, 10)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return src, n
}

// statWalk lstats every entry below root, as a disk-usage walk does.
func statWalk(b *testing.B, root string, want int64) {
	var files int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			files++
		}
		return nil
	})
	if err != nil || files != want {
		b.Fatalf("walk %s: %d files, %v; want %d", root, files, err, want)
	}
}

// BenchmarkStatWalk walks the tree per op: warm (after one untimed walk)
// for every variant; cold through a fresh mount per op, with a fresh
// attribute cache and with the cache shared with earlier mounts of the
// same layer.
func BenchmarkStatWalk(b *testing.B) {
	src, n := treeLayer(b)
	for _, v := range variants(b, src) {
		b.Run(v.name+"/warm", func(b *testing.B) {
			statWalk(b, v.dir, n)
			for b.Loop() {
				statWalk(b, v.dir, n)
			}
		})
	}
	walk := func(mp string) { statWalk(b, mp, n) }
	b.Run("fuse-passthrough/cold-mount", func(b *testing.B) { coldLoop(b, src, nil, walk) })
	b.Run("fuse-passthrough/cold-mount-shared-cache", func(b *testing.B) { coldLoop(b, src, nil, walk, true) })
	if os.Getenv("FUSEFS_BENCH_DROP_CACHES") != "1" {
		return
	}
	// Fully cold: the kernel's dentries and inodes dropped before each
	// op (drop_caches=2 keeps the page cache, so no disk reads are timed),
	// natively and through a fresh mount. It disturbs the whole machine a
	// little, hence opt-in.
	b.Run("native/cold-dcache", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dropDentries(b)
			b.StartTimer()
			statWalk(b, src, n)
		}
	})
	b.Run("fuse-passthrough/cold-mount-dcache", func(b *testing.B) {
		coldLoop(b, src, nil, func(mp string) {
			b.StopTimer()
			dropDentries(b)
			b.StartTimer()
			statWalk(b, mp, n)
		})
	})
}

// dropDentries asks the kernel to drop unused dentries and inodes.
func dropDentries(b *testing.B) {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		b.Fatal(err)
	}
}

// coldLoop times fn on a fresh mount of src per op; mounting and unmounting
// are not timed. With shared set, all mounts come from one Manager (its
// attribute cache stays warm), else each op gets a new Manager.
func coldLoop(b *testing.B, src string, opt Opt, fn func(mp string), shared ...bool) {
	requireFUSE(b)
	var opts []Opt
	if opt != nil {
		opts = append(opts, opt)
	}
	layer := testDigest(src)
	base := b.TempDir()
	sweepMounts(b, base)
	mp := newDir(b, base, "mnt")
	ctx := context.Background()
	var m *Manager
	for b.Loop() {
		b.StopTimer()
		if m == nil || len(shared) == 0 {
			var err error
			if m, err = NewManager(dirSource{layer: src}, opts...); err != nil {
				b.Fatal(err)
			}
		}
		if err := m.Mount(ctx, mp, layer); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		fn(mp)
		b.StopTimer()
		if err := m.Unmount(ctx, mp); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
