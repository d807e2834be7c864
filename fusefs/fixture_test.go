//go:build linux

package fusefs

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/treediff"
)

// everyKindLayer writes a layer with every kind of entry a layer may hold.
// It needs root (devices, ownership).
func everyKindLayer(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }

	writeFile(t, dir, "regular", "some content\n")
	writeFile(t, dir, "empty", "")
	writeFile(t, dir, ".cvmfscatalog", "") // hidden: the documented translation
	// A large sparse file: 256 MiB apparent, data at both ends.
	f, err := os.Create(p("sparse"))
	must(err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(err)
	_, err = f.WriteAt([]byte("tail"), 256<<20-4)
	must(err)
	must(f.Close())

	must(os.Symlink("/etc/passwd", p("abs-link")))
	must(os.Symlink("../regular", p("rel-link-dir/../rel-link")))
	must(os.Symlink("does/not/exist", p("dangling")))

	chain := "chain"
	for i := range 50 {
		chain = filepath.Join(chain, string(rune('a'+i%26)))
	}
	must(os.MkdirAll(p(chain), 0o755))
	writeFile(t, dir, filepath.Join(chain, "leaf"), "deep")

	must(unix.Mkfifo(p("fifo"), 0o640))
	must(unix.Mknod(p("chardev"), unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(p("blockdev"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 0))))

	modes := map[string]os.FileMode{
		"setuid": 0o755 | os.ModeSetuid, "setgid": 0o755 | os.ModeSetgid,
		"m0000": 0, "m0400": 0o400, "m0600": 0o600, "m0640": 0o640, "m0777": 0o777,
	}
	for name, mode := range modes {
		writeFile(t, dir, name, name)
		must(os.Chmod(p(name), mode))
	}
	must(os.Mkdir(p("sticky"), 0o755))
	must(os.Chmod(p("sticky"), 0o777|os.ModeSticky))
	must(os.Mkdir(p("private"), 0o700))

	names := []string{"with space", "ünïcødé ☃", "new\nline", strings.Repeat("x", 255)}
	for _, name := range names {
		writeFile(t, dir, filepath.Join("names", name), name)
	}

	owners := map[string][2]int{"regular": {1000, 1000}, "empty": {65534, 65534}, "setgid": {12345, 54321}, "sticky": {1, 2}}
	for name, o := range owners {
		must(os.Lchown(p(name), o[0], o[1]))
	}
	must(os.Lchown(p("dangling"), 4242, 2424))

	// Nanosecond mtimes everywhere, children before parents.
	i := int64(0)
	var paths []string
	must(filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		paths = append(paths, path)
		return err
	}))
	for j := len(paths) - 1; j >= 0; j-- {
		i++
		ts := unix.NsecToTimespec(time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano() + i*1_000_000_007)
		must(unix.UtimesNanoAt(unix.AT_FDCWD, paths[j], []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
	return dir
}

// walkInfo walks root with the end-to-end tests' tree walker and describes
// every entry by its path relative to root: what TestMountMatchesNativeWalk compares between a
// native walk and one through a mount.
func walkInfo(t testing.TB, root string) map[string]treediff.Entry {
	t.Helper()
	entries, err := treediff.Walk(root)
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	out := make(map[string]treediff.Entry, len(entries))
	for _, e := range entries {
		rel, _ := filepath.Rel(root, e.Path)
		e.Path = rel
		if rel == "." {
			e.Mtime = 0 // the mountpoint's own times are not compared
		}
		out[rel] = e
	}
	return out
}
