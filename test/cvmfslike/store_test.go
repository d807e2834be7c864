//go:build linux

package cvmfslike

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// mountStore writes files (path → content) into a new backing directory
// and mounts a store on it, closed at the end of the test.
func mountStore(t *testing.T, files map[string]string, opts ...Opt) (*Store, string) {
	t.Helper()
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	backing, mnt := filepath.Join(tmp, "backing"), filepath.Join(tmp, "cvmfs")
	for _, d := range []string{backing, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, body := range files {
		writeFile(t, filepath.Join(backing, p), body)
	}
	s, err := Mount(context.Background(), backing, mnt, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, mnt
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMountLikeClient(t *testing.T) {
	s, mnt := mountStore(t, map[string]string{"f": "x"})
	ms, err := mountutil.Under(filepath.Dir(mnt))
	if err != nil {
		t.Fatal(err)
	}
	var info string
	for _, m := range ms {
		if m.Mountpoint == mnt {
			info = fmt.Sprintf("%s %s", m.Source, m.FSType)
		}
	}
	if info != "cvmfs2 fuse.cvmfs2" {
		t.Errorf("mountinfo source and type %q, want \"cvmfs2 fuse.cvmfs2\"", info)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		flag int64
	}{{"ro", unix.ST_RDONLY}, {"nosuid", unix.ST_NOSUID}, {"nodev", unix.ST_NODEV}} {
		if st.Flags&f.flag == 0 {
			t.Errorf("mount is not %s (statfs flags %#x)", f.name, st.Flags)
		}
	}
	for name, op := range map[string]func() error{
		"write":  func() error { return os.WriteFile(filepath.Join(mnt, "f"), nil, 0o644) },
		"create": func() error { return os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644) },
		"remove": func() error { return os.Remove(filepath.Join(mnt, "f")) },
		"mkdir":  func() error { return os.Mkdir(filepath.Join(mnt, "d"), 0o755) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	_ = s
}

func TestOpenRoundTripsKeepCache(t *testing.T) {
	s, mnt := mountStore(t, map[string]string{"dir/f": "content"})
	p := filepath.Join(mnt, "dir/f")
	for i := range 3 {
		if b, err := os.ReadFile(p); err != nil || string(b) != "content" {
			t.Fatalf("read %d: %q, %v", i, b, err)
		}
	}
	st := s.Stats()
	if st.Opens != 3 {
		t.Errorf("%d OPENs reached the store for 3 opens, want 3", st.Opens)
	}
	if st.Reads != 1 {
		t.Errorf("%d READs reached the store for 3 reads of a cached file, want 1 (page cache kept)", st.Reads)
	}
	if st.Misses != 1 {
		t.Errorf("%d cache misses, want 1", st.Misses)
	}
}

func TestCatalogMarkersServed(t *testing.T) {
	_, mnt := mountStore(t, map[string]string{
		".layers/ab/abc/layerfs/.cvmfscatalog":       "",
		".layers/ab/abc/layerfs/usr/.cvmfscatalog":   "",
		".layers/ab/abc/layerfs/usr/bin/true":        "#!",
		".layers/ab/abc/.metadata/layers.json":       "[]",
		".layers/ab/abc/layerfs/etc/.cvmfsdirtab":    "/x",
		".layers/ab/abc/layerfs/etc/.cvmfsautocatal": "",
	})
	for _, p := range []string{"layerfs/.cvmfscatalog", "layerfs/usr/.cvmfscatalog", "layerfs/etc/.cvmfsdirtab", ".metadata/layers.json"} {
		if _, err := os.Lstat(filepath.Join(mnt, ".layers/ab/abc", p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	des, err := os.ReadDir(filepath.Join(mnt, ".layers/ab/abc/layerfs"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	if got := strings.Join(names, " "); got != ".cvmfscatalog etc usr" {
		t.Errorf("layerfs lists %q, want \".cvmfscatalog etc usr\"", got)
	}
}

func TestMagicXattrs(t *testing.T) {
	s, mnt := mountStore(t, map[string]string{"a/b/file": "hello"}, WithRepository("unpacked.test"))
	if err := os.Symlink("file", filepath.Join(s.Backing(), "a/b/link")); err != nil {
		t.Fatal(err)
	}
	get := func(path, name string) (string, error) {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(mnt, path), name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	for _, p := range []string{".", "a", "a/b/file"} {
		if v, err := get(p, "user.fqrn"); err != nil || v != "unpacked.test" {
			t.Errorf("%s: user.fqrn = %q, %v", p, v, err)
		}
		if v, err := get(p, "user.revision"); err != nil || v != "1" {
			t.Errorf("%s: user.revision = %q, %v", p, v, err)
		}
		if v, err := get(p, "user.pid"); err != nil || v != fmt.Sprint(os.Getpid()) {
			t.Errorf("%s: user.pid = %q, %v", p, v, err)
		}
	}
	if v, err := get("a/b/file", "user.hash"); err != nil || v != fmt.Sprintf("%x", sha1.Sum([]byte("hello"))) {
		t.Errorf("user.hash of a file = %q, %v", v, err)
	}
	if _, err := get("a", "user.hash"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.hash of a directory: %v, want ENODATA", err)
	}
	// The kernel answers user.* on symlinks itself, as on a real client.
	if _, err := get("a/b/link", "user.fqrn"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.fqrn of a symlink: %v, want ENODATA (from the kernel)", err)
	}
	if _, err := get("a", "user.nonesuch"); !errors.Is(err, unix.ENODATA) {
		t.Errorf("unknown attribute: %v, want ENODATA", err)
	}
	list := func(path string) string {
		buf := make([]byte, 4096)
		n, err := unix.Llistxattr(filepath.Join(mnt, path), buf)
		if err != nil {
			t.Fatalf("listxattr %s: %v", path, err)
		}
		return string(bytes.ReplaceAll(buf[:n], []byte{0}, []byte{' '}))
	}
	if l := list("."); !strings.Contains(l, "user.fqrn ") || !strings.Contains(l, "user.revision ") {
		t.Errorf("root lists %q, want the magic attributes", l)
	}
	for _, p := range []string{"a", "a/b/file"} {
		if l := list(p); l != "" {
			t.Errorf("%s lists %q, want nothing", p, l)
		}
	}
	s.Reload()
	if v, err := get(".", "user.revision"); err != nil || v != "2" {
		t.Errorf("user.revision after Reload = %q, %v", v, err)
	}
}

func TestMissDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	s, mnt := mountStore(t, map[string]string{"f": "x", "g": "y"}, WithMissDelay(delay))
	open := func(name string) time.Duration {
		t0 := time.Now()
		if _, err := os.ReadFile(filepath.Join(mnt, name)); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	if d := open("f"); d < delay {
		t.Errorf("first open took %v, want >= %v", d, delay)
	}
	if d := open("f"); d >= delay {
		t.Errorf("second open took %v, want < %v", d, delay)
	}
	s.SetMissDelay(0)
	if d := open("g"); d >= delay {
		t.Errorf("first open with no delay took %v", d)
	}
	s.SetMissDelay(delay)
	s.WipeCache()
	if d := open("f"); d < delay {
		t.Errorf("open after WipeCache took %v, want >= %v", d, delay)
	}
	if st := s.Stats(); st.Misses != 3 {
		t.Errorf("%d misses, want 3", st.Misses)
	}
}

// An open of a file whose fetch is under way waits for that fetch to end,
// and is no miss of its own.
func TestMissInFlight(t *testing.T) {
	const delay = time.Second
	s, mnt := mountStore(t, map[string]string{"f": "x"}, WithMissDelay(delay))
	first := make(chan error, 1)
	go func() {
		_, err := os.ReadFile(filepath.Join(mnt, "f"))
		first <- err
	}()
	for s.Stats().Misses == 0 {
		time.Sleep(time.Millisecond)
	}
	t0 := time.Now()
	if _, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < delay/2 {
		t.Errorf("an open during the fetch of the file took %v, want it to wait for the fetch (%v)", d, delay)
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Misses != 1 {
		t.Errorf("%d misses, want 1", st.Misses)
	}
}

func TestOwnership(t *testing.T) {
	files := map[string]string{"d/f": "x"}
	owned := func(s *Store) {
		for _, p := range []string{"d", "d/f"} {
			if err := os.Lchown(filepath.Join(s.Backing(), p), 1234, 5678); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name     string
		opts     []Opt
		uid, gid uint32
	}{
		{"as stored", nil, 1234, 5678},
		{"claimed", []Opt{WithClaimOwnership(999, 995)}, 999, 995},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mnt := mountStore(t, files, tc.opts...)
			owned(s)
			for _, p := range []string{".", "d", "d/f"} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(mnt, p), &st); err != nil {
					t.Fatal(err)
				}
				wantUID, wantGID := tc.uid, tc.gid
				if p == "." && tc.name == "as stored" {
					wantUID, wantGID = 0, 0
				}
				if st.Uid != wantUID || st.Gid != wantGID {
					t.Errorf("%s owned by %d:%d, want %d:%d", p, st.Uid, st.Gid, wantUID, wantGID)
				}
			}
		})
	}
}

func TestReload(t *testing.T) {
	s, mnt := mountStore(t, map[string]string{"layer/dir/f": "data", "other/g": "keep"})
	f, err := os.Open(filepath.Join(mnt, "layer/dir/f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 16)
	if n, err := f.ReadAt(buf, 0); string(buf[:n]) != "data" {
		t.Fatalf("read before removal: %q, %v", buf[:n], err)
	}
	var before unix.Stat_t
	if err := unix.Stat(filepath.Join(mnt, "layer/dir/f"), &before); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("layer"); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("read of an fd opened before the reload: %v, want ENOENT", err)
	}
	if _, err := f.Stat(); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("fstat of an fd opened before the reload: %v, want ENOENT", err)
	}
	for _, p := range []string{"layer", "layer/dir/f"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("lstat %s after reload: %v, want ENOENT", p, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "other/g")); err != nil || string(b) != "keep" {
		t.Errorf("a file kept: %q, %v", b, err)
	}
	// Published again: the same inode number, new content.
	writeFile(t, filepath.Join(s.Backing(), "layer/dir/f"), "again")
	s.Reload()
	var after unix.Stat_t
	if err := unix.Stat(filepath.Join(mnt, "layer/dir/f"), &after); err != nil {
		t.Fatal(err)
	}
	if after.Ino != before.Ino {
		t.Errorf("inode %d after re-adding, was %d", after.Ino, before.Ino)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "layer/dir/f")); err != nil || string(b) != "again" {
		t.Errorf("re-added file: %q, %v", b, err)
	}
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("the old fd after re-adding: %v, want ENOENT", err)
	}
}

func TestFaults(t *testing.T) {
	t.Run("EIO on read", func(t *testing.T) {
		s, mnt := mountStore(t, map[string]string{"bad/f": "x", "good/f": "y"}, WithFailReads("bad/"))
		if _, err := os.ReadFile(filepath.Join(mnt, "bad/f")); !errors.Is(err, syscall.EIO) {
			t.Errorf("read: %v, want EIO", err)
		}
		if _, err := os.ReadFile(filepath.Join(mnt, "good/f")); err != nil {
			t.Errorf("healthy read: %v", err)
		}
		s.FailReads("")
		if _, err := os.ReadFile(filepath.Join(mnt, "bad/f")); err != nil {
			t.Errorf("read after the fault ended: %v", err)
		}
	})
	t.Run("EIO on open", func(t *testing.T) {
		s, mnt := mountStore(t, map[string]string{"bad/f": "x"})
		s.FailOpens("bad/")
		if _, err := os.Open(filepath.Join(mnt, "bad/f")); !errors.Is(err, syscall.EIO) {
			t.Errorf("open: %v, want EIO", err)
		}
		if st := s.Stats(); st.IOErrors != 1 {
			t.Errorf("%d I/O errors counted, want 1", st.IOErrors)
		}
	})
	t.Run("hanging lookup", func(t *testing.T) {
		s, mnt := mountStore(t, map[string]string{"stuck/f": "x", "fine": "y"})
		release := s.HangLookups("stuck")
		done := make(chan error, 1)
		go func() { _, err := os.Stat(filepath.Join(mnt, "stuck/f")); done <- err }()
		select {
		case err := <-done:
			t.Fatalf("the lookup did not hang: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := os.Stat(filepath.Join(mnt, "fine")); err != nil {
			t.Errorf("another lookup during the hang: %v", err)
		}
		release()
		if err := <-done; err != nil {
			t.Errorf("the lookup after release: %v", err)
		}
	})
	t.Run("slow lookups", func(t *testing.T) {
		_, mnt := mountStore(t, map[string]string{"f": "x"}, WithLookupDelay(100*time.Millisecond))
		t0 := time.Now()
		if _, err := os.Stat(filepath.Join(mnt, "f")); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(t0); d < 100*time.Millisecond {
			t.Errorf("lookup took %v", d)
		}
	})
	t.Run("crashed client", func(t *testing.T) {
		s, mnt := mountStore(t, map[string]string{"f": "x"})
		if err := s.Crash(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "f")); !errors.Is(err, syscall.ENOTCONN) {
			t.Errorf("stat after the crash: %v, want ENOTCONN", err)
		}
	})
}
