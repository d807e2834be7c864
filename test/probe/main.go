// Command probe is the only program inside the end-to-end test images: a
// static binary that reports what a container sees.
//
//	probe walk DIR        one JSON object per entry below DIR (same device only)
//	probe cat FILE...     read the files; print bytes read
//	probe write FILE TEXT...  create each FILE with its TEXT
//	probe echo WORDS...   print WORDS
//	probe sleep SECONDS   sleep (a long-running container)
//	probe readloop MS FILE  read FILE every MS milliseconds until killed (readloop.go)
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Entry is what probe walk prints for each path; the e2e tests decode it.
type Entry struct {
	Path   string   `json:"path"`
	Type   string   `json:"type"`
	Mode   uint32   `json:"mode"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Size   int64    `json:"size"`
	Mtime  int64    `json:"mtime"`
	SHA256 string   `json:"sha256,omitempty"`
	Link   string   `json:"link,omitempty"`
	Rdev   uint64   `json:"rdev,omitempty"`
	Nlink  uint64   `json:"nlink"`
	Xattrs []string `json:"xattrs,omitempty"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: probe walk|cat|write|echo ...")
	}
	switch args[0] {
	case "walk":
		return walk(args[1])
	case "cat":
		var total int64
		for _, f := range args[1:] {
			n, err := readAll(f)
			if err != nil {
				return err
			}
			total += n
		}
		fmt.Printf("read %d files, %d bytes\n", len(args)-1, total)
		return nil
	case "write":
		for i := 1; i+1 < len(args); i += 2 {
			if err := os.WriteFile(args[i], []byte(args[i+1]), 0o644); err != nil {
				return err
			}
		}
		return nil
	case "sleep":
		d, err := time.ParseDuration(args[1] + "s")
		if err != nil {
			return err
		}
		time.Sleep(d)
		return nil
	case "echo":
		fmt.Println(strings.Join(args[1:], " "))
		return nil
	case "readloop":
		return readLoop(args[1:])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func readAll(name string) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(io.Discard, f)
}

func walk(root string) error {
	mounts, err := mountpoints()
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
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
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return out.Flush()
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
