//go:build linux

package fusefs

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// everyKindLayer writes a layer with every kind of entry test 7a asks for.
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

// entryInfo is what test 7a compares between a native walk and one through
// a mount.
type entryInfo struct {
	Mode       uint32
	UID, GID   uint32
	Size       int64
	Mtime      unix.Timespec
	Rdev       uint64
	LinkTarget string
	SHA256     string
}

// walkInfo walks root and describes every entry by its relative path.
func walkInfo(t testing.TB, root string) map[string]entryInfo {
	t.Helper()
	out := map[string]entryInfo{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		info := entryInfo{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Size: st.Size, Mtime: st.Mtim, Rdev: st.Rdev}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			info.LinkTarget, err = os.Readlink(path)
		case unix.S_IFREG:
			info.SHA256, err = hashFile(path)
		}
		if rel == "." {
			info.Mtime = unix.Timespec{} // the mountpoint's own times are not compared
		}
		out[rel] = info
		return err
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
