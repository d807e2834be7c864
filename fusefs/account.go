package fusefs

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// fileStat is the profile entry of one path; nil-safe.
type fileStat struct {
	opens, bytes atomic.Int64
}

func (f *fileStat) addBytes(n int64) {
	if f != nil {
		f.bytes.Add(n)
	}
}

// account is the per-layer accounting shared by every mount of a digest.
// Counters are atomics; the profile and error maps are under mu. It is
// written on the request path and so never logs.
type account struct {
	lookups, getattrs, opens, readdirs, readlinks atomic.Int64
	reads, bytesRead, panics                      atomic.Int64
	// absent counts the names and attributes asked for that do not exist
	// (see missing): the ordinary answers of overlayfs's merging, kept out
	// of errors.
	absent                 atomic.Int64
	cacheHits, cacheMisses atomic.Int64
	first, last            atomic.Int64 // unix nanoseconds

	limit int

	mu        sync.Mutex
	errors    map[string]int64
	files     map[string]*fileStat
	truncated bool

	// prefetch is the layer's prefetch, if one ran (set once).
	prefetch atomic.Pointer[prefetchState]
}

func newAccount(limit int) *account {
	return &account{limit: limit, errors: map[string]int64{}, files: map[string]*fileStat{}}
}

// begin counts a request in counter (if not nil), records the access time
// and returns a, for handlers to start with.
func (a *account) begin(counter *atomic.Int64) *account {
	if counter != nil {
		counter.Add(1)
	}
	a.touch()
	return a
}

// touch records an access now.
func (a *account) touch() {
	now := time.Now().UnixNano()
	a.last.Store(now)
	if a.first.Load() == 0 {
		a.first.CompareAndSwap(0, now)
	}
}

// fail counts errno (if not 0) and returns it, so handlers can
// `return a.fail(errno)`.
func (a *account) fail(errno syscall.Errno) syscall.Errno {
	if errno == 0 {
		return 0
	}
	name := unix.ErrnoName(errno)
	if name == "" {
		name = errno.Error()
	}
	a.mu.Lock()
	a.errors[name]++
	a.mu.Unlock()
	return errno
}

// missing counts an answer that a name or an attribute does not exist
// (errno ENOENT or ENODATA) and returns errno. Those are not errors:
// overlayfs looks every name up in every layer that shares a directory,
// and most layers lack most names. An entry that exists, or that its
// directory's listing holds, and then cannot be found is a failure and
// goes to fail instead.
func (a *account) missing(errno syscall.Errno) syscall.Errno {
	a.absent.Add(1)
	return errno
}

// opened counts an open of path and returns its profile entry, or nil once
// the profile is full.
func (a *account) opened(path string) *fileStat {
	a.opens.Add(1)
	return a.profiled(path, true)
}

// seen reports whether a workload read path already.
func (a *account) seen(path string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.files[path]
	return ok
}

// profiled returns path's profile entry (nil once the profile is full),
// counting an open of it if open is set.
func (a *account) profiled(path string, open bool) *fileStat {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.files[path]
	if f == nil {
		a.prefetch.Load().workloadRead(path)
		if len(a.files) >= a.limit {
			a.truncated = true
			return nil
		}
		f = &fileStat{}
		a.files[path] = f
	}
	if open {
		f.opens.Add(1)
	}
	return f
}

// stats fills the counters of s.
func (a *account) stats(s *usage.LayerStats) {
	a.prefetch.Load().stats(s)
	s.Lookups = a.lookups.Load()
	s.Getattrs = a.getattrs.Load()
	s.Opens = a.opens.Load()
	s.Readdirs = a.readdirs.Load()
	s.Readlinks = a.readlinks.Load()
	s.Reads = a.reads.Load()
	s.BytesRead = a.bytesRead.Load()
	s.Panics = a.panics.Load()
	s.Absent = a.absent.Load()
	s.CacheHits = a.cacheHits.Load()
	s.CacheMisses = a.cacheMisses.Load()
	if t := a.first.Load(); t != 0 {
		s.FirstAccess = time.Unix(0, t)
	}
	if t := a.last.Load(); t != 0 {
		s.LastAccess = time.Unix(0, t)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s.UniqueFiles = int64(len(a.files))
	s.ProfileTruncated = a.truncated
	s.Errors = make(map[string]int64, len(a.errors))
	for k, v := range a.errors {
		s.Errors[k] = v
	}
}

// profile returns the per-file profile, most bytes first, then by path.
func (a *account) profile() []usage.FileAccess {
	a.mu.Lock()
	out := make([]usage.FileAccess, 0, len(a.files))
	for p, f := range a.files {
		out = append(out, usage.FileAccess{Path: p, Opens: f.opens.Load(), Bytes: f.bytes.Load()})
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y usage.FileAccess) int {
		if c := cmp.Compare(y.Bytes, x.Bytes); c != 0 {
			return c
		}
		return cmp.Compare(x.Path, y.Path)
	})
	return out
}
