//go:build linux

package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountIsReadOnly: every write attempt through the mount
// fails with EROFS and the source is untouched.
func TestMountIsReadOnly(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	writeFile(t, src, "f", "content")
	writeFile(t, src, "d/g", "g")
	if err := os.Symlink("f", filepath.Join(src, "l")); err != nil {
		t.Fatal(err)
	}
	before := walkInfo(t, src)
	_, mp, _ := mountLayer(t, src)
	p := func(rel string) string { return filepath.Join(mp, rel) }
	now := time.Now()

	attempts := map[string]func() error{
		"create":           func() error { _, err := os.Create(p("new")); return err },
		"open O_WRONLY":    func() error { _, err := os.OpenFile(p("f"), os.O_WRONLY, 0); return err },
		"open O_RDWR":      func() error { _, err := os.OpenFile(p("f"), os.O_RDWR, 0); return err },
		"open O_TRUNC":     func() error { _, err := os.OpenFile(p("f"), os.O_RDONLY|os.O_TRUNC, 0); return err },
		"open O_APPEND":    func() error { _, err := os.OpenFile(p("f"), os.O_WRONLY|os.O_APPEND, 0); return err },
		"O_TMPFILE":        func() error { _, err := unix.Open(p("d"), unix.O_TMPFILE|unix.O_RDWR, 0o600); return err },
		"truncate":         func() error { return os.Truncate(p("f"), 0) },
		"chmod":            func() error { return os.Chmod(p("f"), 0o600) },
		"chown":            func() error { return os.Chown(p("f"), 1, 1) },
		"lchown symlink":   func() error { return os.Lchown(p("l"), 1, 1) },
		"utimes":           func() error { return os.Chtimes(p("f"), now, now) },
		"mkdir":            func() error { return os.Mkdir(p("nd"), 0o755) },
		"rmdir":            func() error { return unix.Rmdir(p("d")) },
		"unlink":           func() error { return unix.Unlink(p("f")) },
		"unlink symlink":   func() error { return unix.Unlink(p("l")) },
		"rename":           func() error { return os.Rename(p("f"), p("f2")) },
		"rename over":      func() error { return os.Rename(p("f"), p("d/g")) },
		"symlink":          func() error { return os.Symlink("f", p("l2")) },
		"link":             func() error { return os.Link(p("f"), p("f3")) },
		"mknod":            func() error { return unix.Mknod(p("dev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))) },
		"mkfifo":           func() error { return unix.Mkfifo(p("fifo"), 0o600) },
		"setxattr":         func() error { return unix.Setxattr(p("f"), "user.x", []byte("1"), 0) },
		"setxattr trusted": func() error { return unix.Setxattr(p("d"), "trusted.overlay.opaque", []byte("y"), 0) },
		"removexattr":      func() error { return unix.Removexattr(p("f"), "user.x") },
	}
	for name, attempt := range attempts {
		t.Run(name, func(t *testing.T) {
			if err := attempt(); !errors.Is(err, unix.EROFS) {
				t.Errorf("%s: %v, want EROFS", name, err)
			}
		})
	}
	if after := walkInfo(t, src); !reflect.DeepEqual(before, after) {
		t.Errorf("source changed:\n before %+v\n after  %+v", before, after)
	}
}
