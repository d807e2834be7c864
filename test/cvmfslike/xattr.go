//go:build linux

package cvmfslike

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
)

// The client's magic extended attributes. Repository-wide ones answer on
// every path and are listed at the root; per-entry ones (hash, chunks,
// rawlink, ...) answer where they apply, ENODATA elsewhere, and are never
// listed. No other extended attribute exists: DUCC's ingest drops them.

// global are the repository-wide attributes, by name without "user.".
var global = map[string]func(s *Store) string{
	"fqrn":             func(s *Store) string { return s.cfg.fqrn },
	"revision":         func(s *Store) string { return strconv.FormatUint(s.revision.Load(), 10) },
	"root_hash":        func(s *Store) string { return s.rootHash() },
	"pid":              func(s *Store) string { return strconv.Itoa(os.Getpid()) },
	"host":             func(s *Store) string { return "http://stratum1.cvmfs.test/cvmfs/" + s.cfg.fqrn },
	"host_list":        func(s *Store) string { return "http://stratum1.cvmfs.test/cvmfs/" + s.cfg.fqrn },
	"proxy":            func(s *Store) string { return "DIRECT" },
	"proxy_list":       func(s *Store) string { return "DIRECT\n" },
	"version":          func(s *Store) string { return "2.12.0" },
	"uptime":           func(s *Store) string { return strconv.Itoa(int(time.Since(s.started).Minutes())) },
	"expires":          func(s *Store) string { return "4" },
	"nclg":             func(s *Store) string { return "1" },
	"nopen":            func(s *Store) string { return strconv.FormatInt(s.opens.Load(), 10) },
	"ndownload":        func(s *Store) string { return strconv.FormatInt(s.misses.Load(), 10) },
	"nioerr":           func(s *Store) string { return strconv.FormatInt(s.ioErrors.Load(), 10) },
	"timeout":          func(s *Store) string { return "5" },
	"timeout_direct":   func(s *Store) string { return "10" },
	"tag":              func(s *Store) string { return "generic-" + strconv.FormatUint(s.revision.Load(), 10) },
	"maxfd":            func(s *Store) string { return "130560" },
	"usedfd":           func(s *Store) string { return "0" },
	"useddirp":         func(s *Store) string { return "0" },
	"speed":            func(s *Store) string { return "0" },
	"rx":               func(s *Store) string { return "0" },
	"catalog_counters": func(s *Store) string { return "catalogs: 1\n" },
	"repo_counters":    func(s *Store) string { return "catalogs: 1\n" },
}

// listed is the sorted, NUL-separated list of the root's attributes.
var listed = func() []byte {
	var names []string
	for k := range global {
		names = append(names, "user."+k)
	}
	slices.Sort(names)
	var b []byte
	for _, n := range names {
		b = append(append(b, n...), 0)
	}
	return b
}()

func (s *Store) rootHash() string {
	h := sha1.Sum([]byte(s.cfg.fqrn + "/" + strconv.FormatUint(s.revision.Load(), 10)))
	return hex.EncodeToString(h[:])
}

var (
	_ = (fs.NodeGetxattrer)((*node)(nil))
	_ = (fs.NodeListxattrer)((*node)(nil))
)

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if n.stale.Load() {
		return 0, syscall.ENOENT
	}
	v, errno := n.xattr(attr)
	if errno != 0 {
		return 0, errno
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// xattr returns the value of the magic attribute attr on n.
func (n *node) xattr(attr string) (string, syscall.Errno) {
	const prefix = "user."
	if len(attr) <= len(prefix) || attr[:len(prefix)] != prefix {
		return "", syscall.ENODATA
	}
	name := attr[len(prefix):]
	if f, ok := global[name]; ok {
		return f(n.s), 0
	}
	mode := n.StableAttr().Mode
	switch {
	case mode == syscall.S_IFREG && (name == "hash" || name == "lhash"):
		return n.hash()
	case mode == syscall.S_IFREG && name == "chunks":
		return "1", 0
	case mode == syscall.S_IFREG && name == "compression":
		return "zlib", 0
	case mode == syscall.S_IFREG && name == "external_file":
		return "0", 0
	case mode == syscall.S_IFLNK && name == "rawlink":
		t, err := os.Readlink(n.path())
		return t, fs.ToErrno(err)
	}
	return "", syscall.ENODATA
}

// hash returns the SHA-1 of the file's content (its content address in
// the repository), computed once.
func (n *node) hash() (string, syscall.Errno) {
	n.s.mu.Lock()
	h, ok := n.s.hashes[n.rel]
	n.s.mu.Unlock()
	if ok {
		return h, 0
	}
	fd, err := n.open()
	if err != nil {
		return "", fs.ToErrno(err)
	}
	f := os.NewFile(uintptr(fd), n.path())
	defer f.Close()
	sum := sha1.New()
	if _, err := io.Copy(sum, f); err != nil {
		return "", fs.ToErrno(err)
	}
	h = fmt.Sprintf("%x", sum.Sum(nil))
	n.s.mu.Lock()
	n.s.hashes[n.rel] = h
	n.s.mu.Unlock()
	return h, 0
}

func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	if n.stale.Load() {
		return 0, syscall.ENOENT
	}
	if n.rel != "" {
		return 0, 0
	}
	if len(dest) < len(listed) {
		return uint32(len(listed)), syscall.ERANGE
	}
	return uint32(copy(dest, listed)), 0
}
