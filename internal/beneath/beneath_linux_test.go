//go:build linux

package beneath

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// tree makes, in a new directory, the root that the tests resolve beneath
// and a sibling outside it:
//
//	root/a/b/file        regular
//	root/a/fifo          FIFO
//	root/a/up  -> ../..  symlink leaving the root
//	root/abs   -> outside (absolute)
//	root/dlink -> a      symlink to a directory inside
//	root/flink -> a/b/file
//	outside/secret
//
// It returns the root's O_PATH descriptor (closed with the test) and the
// (dev, ino) of every inode under the root.
func tree(tb testing.TB) (int, map[[2]uint64]bool) {
	tb.Helper()
	dir := tb.TempDir()
	root := filepath.Join(dir, "root")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(root, "a/b"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(root, "a/b/file"), filepath.Join(outside, "secret")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(root, "a/fifo"), 0o644); err != nil {
		tb.Fatal(err)
	}
	for link, target := range map[string]string{"a/up": "../..", "abs": outside, "dlink": "a", "flink": "a/b/file"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			tb.Fatal(err)
		}
	}
	inside := map[[2]uint64]bool{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		inside[[2]uint64{st.Dev, st.Ino}] = true
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return fd, inside
}

// opener is Open or walk, as Open calls it.
type opener struct {
	name string
	open func(dirfd int, rel string, flags int) (int, error)
}

var openers = []opener{
	{"Open", Open},
	{"walk", func(dirfd int, rel string, flags int) (int, error) {
		if rel == "" {
			rel = "."
		}
		if rel[0] == '/' || hasDotDot(rel) {
			return -1, unix.EXDEV
		}
		return walk(dirfd, rel, flags|unix.O_CLOEXEC)
	}},
}

func TestOpen(t *testing.T) {
	rootfd, _ := tree(t)
	for _, tc := range []struct {
		rel   string
		flags int
		want  error  // nil: opened
		typ   uint32 // S_IFMT of what was opened
	}{
		{"", unix.O_PATH, nil, unix.S_IFDIR},
		{".", unix.O_RDONLY | unix.O_DIRECTORY, nil, unix.S_IFDIR},
		{"a/b", unix.O_PATH | unix.O_DIRECTORY, nil, unix.S_IFDIR},
		{"a/b/", unix.O_PATH, nil, unix.S_IFDIR},
		{"a//b/./file", unix.O_RDONLY, nil, unix.S_IFREG},
		{"a/b/file", unix.O_PATH | unix.O_DIRECTORY, unix.ENOTDIR, 0},
		{"a/b/file/", unix.O_PATH, unix.ENOTDIR, 0},
		{"a/b/file/x", unix.O_PATH, unix.ENOTDIR, 0},
		{"a/missing", unix.O_PATH, unix.ENOENT, 0},
		{"a/fifo", unix.O_PATH, nil, unix.S_IFIFO},
		// Symlinks: never followed, anywhere.
		{"a/up", unix.O_PATH, unix.ELOOP, 0},
		{"a/up", unix.O_PATH | unix.O_DIRECTORY, unix.ELOOP, 0},
		{"a/up", unix.O_RDONLY, unix.ELOOP, 0},
		{"a/up", unix.O_RDONLY | unix.O_NOFOLLOW, unix.ELOOP, 0},
		{"a/up/outside/secret", unix.O_RDONLY, unix.ELOOP, 0},
		{"abs/secret", unix.O_RDONLY, unix.ELOOP, 0},
		{"abs", unix.O_PATH | unix.O_DIRECTORY, unix.ELOOP, 0},
		{"dlink/b/file", unix.O_RDONLY, unix.ELOOP, 0},
		{"flink", unix.O_RDONLY, unix.ELOOP, 0},
		{"flink", unix.O_PATH, unix.ELOOP, 0},
		// O_PATH|O_NOFOLLOW opens the trailing link itself.
		{"flink", unix.O_PATH | unix.O_NOFOLLOW, nil, unix.S_IFLNK},
		{"abs", unix.O_PATH | unix.O_NOFOLLOW, nil, unix.S_IFLNK},
		// "..", even staying beneath, and absolute paths.
		{"..", unix.O_PATH, unix.EXDEV, 0},
		{"a/..", unix.O_PATH, unix.EXDEV, 0},
		{"a/../a/b", unix.O_PATH, unix.EXDEV, 0},
		{"a/b/../../../outside/secret", unix.O_RDONLY, unix.EXDEV, 0},
		{"/etc/passwd", unix.O_RDONLY, unix.EXDEV, 0},
		{"/", unix.O_PATH, unix.EXDEV, 0},
	} {
		for _, o := range openers {
			fd, err := o.open(rootfd, tc.rel, tc.flags)
			if err != nil {
				if tc.want == nil || !errors.Is(err, tc.want) {
					t.Errorf("%s(%q, %#x) = %v, want %v", o.name, tc.rel, tc.flags, err, tc.want)
				}
				continue
			}
			var st unix.Stat_t
			serr := unix.Fstat(fd, &st)
			unix.Close(fd)
			switch {
			case tc.want != nil:
				t.Errorf("%s(%q, %#x) opened it, want %v", o.name, tc.rel, tc.flags, tc.want)
			case serr != nil:
				t.Errorf("%s(%q): fstat: %v", o.name, tc.rel, serr)
			case st.Mode&unix.S_IFMT != tc.typ:
				t.Errorf("%s(%q, %#x) opened type %#o, want %#o", o.name, tc.rel, tc.flags, st.Mode&unix.S_IFMT, tc.typ)
			}
		}
	}
}

// TestOpenCloseOnExec: every descriptor is O_CLOEXEC.
func TestOpenCloseOnExec(t *testing.T) {
	rootfd, _ := tree(t)
	for _, o := range openers {
		fd, err := o.open(rootfd, "a/b/file", unix.O_RDONLY)
		if err != nil {
			t.Fatal(err)
		}
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		unix.Close(fd)
		if err != nil || fl&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s: FD flags %#x, %v; want FD_CLOEXEC", o.name, fl, err)
		}
	}
}

// TestOpenLongerThanPathMax: a path too long for one openat2 is walked.
func TestOpenLongerThanPathMax(t *testing.T) {
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var rel []string
	cur, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		name := strings.Repeat(string(rune('a'+i)), 250)
		rel = append(rel, name)
		if err := unix.Mkdirat(cur, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			t.Fatal(err)
		}
		cur = next
	}
	unix.Close(cur)
	long := strings.Join(rel, "/")
	if len(long) < unix.PathMax {
		t.Fatalf("path of %d bytes is not longer than PATH_MAX", len(long))
	}
	got, err := Open(fd, long, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		t.Fatalf("Open of a %d-byte path: %v", len(long), err)
	}
	unix.Close(got)
	if _, err := Open(fd, long+"/../x", unix.O_PATH); !errors.Is(err, unix.EXDEV) {
		t.Errorf("Open of a long path with ..: %v, want EXDEV", err)
	}
}

// FuzzOpen: whatever rel and flags, Open and walk open nothing outside the
// root and no symlink unless O_PATH|O_NOFOLLOW asked for it, and walk (the
// resolution without openat2) opens exactly what openat2 opens.
func FuzzOpen(f *testing.F) {
	for _, s := range []string{"", ".", "a", "a/b/file", "a/fifo", "a/up", "a/up/outside/secret",
		"abs/secret", "dlink/b", "flink", "a/..", "../outside", "/etc", "a//b/", "a/b/file/.", "./a/./b"} {
		f.Add(s, uint8(0))
		f.Add(s, uint8(3))
	}
	rootfd, inside := tree(f)
	flagSets := []int{
		unix.O_PATH,
		unix.O_PATH | unix.O_NOFOLLOW,
		unix.O_PATH | unix.O_DIRECTORY,
		unix.O_RDONLY | unix.O_NONBLOCK,
		unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW,
		unix.O_RDONLY | unix.O_NONBLOCK | unix.O_DIRECTORY,
	}
	f.Fuzz(func(t *testing.T, rel string, sel uint8) {
		flags := flagSets[int(sel)%len(flagSets)]
		var got [2]*unix.Stat_t
		for i, o := range openers {
			fd, err := o.open(rootfd, rel, flags)
			if err != nil {
				continue
			}
			var st unix.Stat_t
			serr := unix.Fstat(fd, &st)
			unix.Close(fd)
			if serr != nil {
				t.Fatalf("%s(%q): fstat: %v", o.name, rel, serr)
			}
			if !inside[[2]uint64{st.Dev, st.Ino}] {
				t.Fatalf("%s(%q, %#x) opened an inode outside the root", o.name, rel, flags)
			}
			if st.Mode&unix.S_IFMT == unix.S_IFLNK && flags&(unix.O_PATH|unix.O_NOFOLLOW) != unix.O_PATH|unix.O_NOFOLLOW {
				t.Fatalf("%s(%q, %#x) opened a symlink", o.name, rel, flags)
			}
			got[i] = &st
		}
		if len(rel) >= unix.PathMax {
			return // Open walks too
		}
		switch {
		case (got[0] == nil) != (got[1] == nil):
			t.Fatalf("%q, %#x: openat2 opened %v, the walk %v", rel, flags, got[0] != nil, got[1] != nil)
		case got[0] != nil && got[0].Ino != got[1].Ino:
			t.Fatalf("%q, %#x: openat2 and the walk opened different inodes", rel, flags)
		}
	})
}
