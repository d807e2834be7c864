//go:build linux

package treediff

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Walk returns what a process sees at root and below, in lexical order,
// skipping every mountpoint below root (in a container: /proc, /dev, ...,
// the runtime's rather than the image's). It hashes every regular file.
func Walk(root string) ([]Entry, error) {
	mounts, err := mountpoints()
	if err != nil {
		return nil, err
	}
	var entries []Entry
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if p != root && mounts[p] {
			// /proc, /dev, ...: the runtime's, not the image's. (st_dev
			// cannot tell: overlayfs reports the lower layer's device
			// for files.)
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		e := Entry{
			Path: p, Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Size: st.Size,
			Mtime: st.Mtim.Nano(), Nlink: uint64(st.Nlink),
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			e.Type, e.Size = "dir", 0
		case unix.S_IFREG:
			e.Type = "file"
			if e.SHA256, err = hashFile(p); err != nil {
				return err
			}
		case unix.S_IFLNK:
			e.Type = "symlink"
			if e.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFCHR:
			e.Type, e.Rdev = "char", uint64(st.Rdev)
		case unix.S_IFBLK:
			e.Type, e.Rdev = "block", uint64(st.Rdev)
		case unix.S_IFIFO:
			e.Type = "fifo"
		case unix.S_IFSOCK:
			e.Type = "socket"
		}
		e.Xattrs = xattrs(p)
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// mountpoints returns the mountpoints listed in /proc/self/mountinfo.
func mountpoints() (map[string]bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			out[unescapeOctal(f[4])] = true
		}
	}
	return out, nil
}

// unescapeOctal undoes mountinfo's \ooo escapes (space, tab, newline, \).
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + c - '0'
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
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

func xattrs(p string) []string {
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 1024)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			m = 0
		}
		out = append(out, name+"="+string(v[:m]))
	}
	sort.Strings(out)
	return out
}
