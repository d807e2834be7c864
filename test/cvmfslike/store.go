//go:build linux

package cvmfslike

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// config is what the options set.
type config struct {
	fqrn        string
	revision    uint64
	missDelay   time.Duration
	claim       bool
	uid, gid    uint32
	kcache      time.Duration
	lookupDelay time.Duration
	eioOpen     string
	eioRead     string
	debug       bool
}

// Opt configures a Store.
type Opt func(*config) error

// WithRepository sets the fully qualified repository name (user.fqrn);
// the default is "unpacked.cern.ch".
func WithRepository(fqrn string) Opt {
	return func(c *config) error {
		if fqrn == "" {
			return errors.New("empty repository name")
		}
		c.fqrn = fqrn
		return nil
	}
}

// WithMissDelay makes the first open of each file wait d, as a cache miss
// fetched over the network does. See Store.SetMissDelay.
func WithMissDelay(d time.Duration) Opt {
	return func(c *config) error { c.missDelay = d; return nil }
}

// WithClaimOwnership presents every file as owned by uid:gid, as a client
// running as that user with CVMFS_CLAIM_OWNERSHIP=yes does. Without it,
// owners are presented as stored.
func WithClaimOwnership(uid, gid uint32) Opt {
	return func(c *config) error { c.claim, c.uid, c.gid = true, uid, gid; return nil }
}

// WithKernelCacheTimeout sets how long the kernel may cache entries and
// attributes (CVMFS_KCACHE_TIMEOUT; default 60 s). Reload invalidates what
// it removes regardless. Negative entries are never cached, so paths
// published later appear at once.
func WithKernelCacheTimeout(d time.Duration) Opt {
	return func(c *config) error { c.kcache = d; return nil }
}

// WithLookupDelay makes every lookup wait d (a slow client). See
// Store.SetLookupDelay.
func WithLookupDelay(d time.Duration) Opt {
	return func(c *config) error { c.lookupDelay = d; return nil }
}

// WithFailOpens makes opens of files whose path contains substr fail with
// EIO. See Store.FailOpens.
func WithFailOpens(substr string) Opt {
	return func(c *config) error { c.eioOpen = substr; return nil }
}

// WithFailReads makes reads of files whose path contains substr fail with
// EIO. See Store.FailReads.
func WithFailReads(substr string) Opt {
	return func(c *config) error { c.eioRead = substr; return nil }
}

// WithDebug logs every FUSE request (go-fuse's debug output).
func WithDebug() Opt {
	return func(c *config) error { c.debug = true; return nil }
}

// Store is a mounted CVMFS-like store. Its methods are safe for concurrent
// use; Close unmounts it.
type Store struct {
	backing    string
	mountpoint string
	cfg        config
	server     *fuse.Server
	root       *node
	started    time.Time

	missDelay   atomic.Int64 // time.Duration
	lookupDelay atomic.Int64 // time.Duration
	eioOpen     atomic.Pointer[string]
	eioRead     atomic.Pointer[string]
	revision    atomic.Uint64
	opens       atomic.Int64
	misses      atomic.Int64
	lookups     atomic.Int64
	reads       atomic.Int64
	ioErrors    atomic.Int64
	hangMu      sync.Mutex
	hang        string
	release     chan struct{}

	mu sync.Mutex
	// nodes are the nodes the kernel may know, for Reload.
	nodes map[*node]struct{}
	// gens counts, per path, how often it was removed: the generation of
	// the next node at that path.
	gens map[string]uint64
	// fetched holds the files in the "local cache" or being fetched
	// into it: the channel is closed when the fetch is done.
	fetched map[string]chan struct{}
	// hashes caches user.hash values by path.
	hashes map[string]string
	closed bool
}

// Mount serves backing at mountpoint (both existing directories) until
// Close. The tree under backing may be changed while mounted (that is
// publishing); clients see removals only after Reload.
func Mount(ctx context.Context, backing, mountpoint string, opts ...Opt) (*Store, error) {
	cfg := config{fqrn: "unpacked.cern.ch", revision: 1, kcache: 60 * time.Second}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	backing, err := filepath.Abs(backing)
	if err != nil {
		return nil, err
	}
	if mountpoint, err = filepath.Abs(mountpoint); err != nil {
		return nil, err
	}
	if st, err := os.Stat(backing); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("backing directory %q: not a directory (%v)", backing, err)
	}
	s := &Store{
		backing:    backing,
		mountpoint: mountpoint,
		cfg:        cfg,
		started:    time.Now(),
		release:    make(chan struct{}),
		nodes:      map[*node]struct{}{},
		gens:       map[string]uint64{},
		fetched:    map[string]chan struct{}{},
		hashes:     map[string]string{},
	}
	s.missDelay.Store(int64(cfg.missDelay))
	s.lookupDelay.Store(int64(cfg.lookupDelay))
	s.revision.Store(cfg.revision)
	if cfg.eioOpen != "" {
		s.FailOpens(cfg.eioOpen)
	}
	if cfg.eioRead != "" {
		s.FailReads(cfg.eioRead)
	}
	s.root = &node{s: s}
	kcache, neg := cfg.kcache, time.Duration(0)
	fsOpts := &fs.Options{
		EntryTimeout:    &kcache,
		AttrTimeout:     &kcache,
		NegativeTimeout: &neg,
		NullPermissions: true,
		MountOptions: fuse.MountOptions{
			FsName:     "cvmfs2",
			Name:       "cvmfs2",
			AllowOther: true,
			Options:    []string{"default_permissions"},
			// As cvmfs2 is mounted by autofs or mount -t cvmfs.
			DirectMount:      true,
			DirectMountFlags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV,
			// cvmfs2 reads in userspace: no backing files, stack depth 0.
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
			Debug:                cfg.debug,
		},
	}
	s.server, err = fuse.NewServer(noFlush{fs.NewNodeFS(s.root, fsOpts)}, mountpoint, &fsOpts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount CVMFS-like store at %q: %w", mountpoint, err)
	}
	go s.server.Serve()
	if err := s.server.WaitMount(); err != nil {
		_ = s.server.Unmount()
		return nil, fmt.Errorf("mount CVMFS-like store at %q: %w", mountpoint, err)
	}
	return s, nil
}

// noFlush answers FLUSH with ENOSYS, as cvmfs2 (which has no flush
// handler) does; the kernel then never sends it again. It also keeps a
// process that serves this store and holds files open on it from
// blocking at exit on a FLUSH no server thread is left to answer.
type noFlush struct{ fuse.RawFileSystem }

func (noFlush) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.ENOSYS }

// Mountpoint returns where the store is mounted.
func (s *Store) Mountpoint() string { return s.mountpoint }

// Backing returns the directory the store serves.
func (s *Store) Backing() string { return s.backing }

// SetMissDelay sets the delay of the first open of each file not yet in
// the store's cache (0: none).
func (s *Store) SetMissDelay(d time.Duration) { s.missDelay.Store(int64(d)) }

// SetLookupDelay makes every lookup wait d (0: none).
func (s *Store) SetLookupDelay(d time.Duration) { s.lookupDelay.Store(int64(d)) }

// FailOpens makes opens of files whose path (relative to the root)
// contains substr fail with EIO; "" stops it.
func (s *Store) FailOpens(substr string) { storeSwitch(&s.eioOpen, substr) }

// FailReads makes reads of files whose path contains substr fail with EIO,
// also through descriptors opened before; "" stops it.
func (s *Store) FailReads(substr string) { storeSwitch(&s.eioRead, substr) }

func storeSwitch(p *atomic.Pointer[string], substr string) {
	if substr == "" {
		p.Store(nil)
		return
	}
	p.Store(&substr)
}

func matches(p *atomic.Pointer[string], path string) bool {
	s := p.Load()
	return s != nil && strings.Contains(path, *s)
}

// HangLookups makes lookups of paths containing substr block, as a stuck
// client does, until the returned release is called (or the request is
// interrupted). Calling release twice is harmless.
func (s *Store) HangLookups(substr string) (release func()) {
	s.hangMu.Lock()
	defer s.hangMu.Unlock()
	s.hang = substr
	ch := s.release
	var once sync.Once
	return func() {
		once.Do(func() {
			s.hangMu.Lock()
			defer s.hangMu.Unlock()
			if s.release == ch {
				s.hang = ""
				s.release = make(chan struct{})
			}
			close(ch)
		})
	}
}

// hangFor returns the channel to wait on if path must hang, else nil.
func (s *Store) hangFor(path string) chan struct{} {
	s.hangMu.Lock()
	defer s.hangMu.Unlock()
	if s.hang != "" && strings.Contains(path, s.hang) {
		return s.release
	}
	return nil
}

// WipeCache empties the store's cache (cvmfs_config wipecache): the next
// open of every file is a miss again. The kernel's page cache is not
// touched.
func (s *Store) WipeCache() {
	s.mu.Lock()
	s.fetched = map[string]chan struct{}{}
	s.mu.Unlock()
}

// Stats are the store's counters since Mount.
type Stats struct {
	// Reads counts READ requests: with the page cache kept, a file read
	// twice costs one.
	Lookups, Opens, Reads, Misses, IOErrors int64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{Lookups: s.lookups.Load(), Opens: s.opens.Load(), Reads: s.reads.Load(), Misses: s.misses.Load(), IOErrors: s.ioErrors.Load()}
}

// Remove deletes rel (a path relative to the repository root, say a
// layer's directory) and everything below it from the backing tree, as
// publishing a deletion does. Clients see it after Reload.
func (s *Store) Remove(rel string) error {
	rel, err := s.clean(rel)
	if err != nil {
		return err
	}
	if rel == "" {
		return errors.New("cannot remove the repository root")
	}
	return os.RemoveAll(filepath.Join(s.backing, rel))
}

// clean checks that rel stays below the root and returns it cleaned ("" is
// the root).
func (s *Store) clean(rel string) (string, error) {
	if filepath.IsAbs(rel) {
		if r, err := filepath.Rel(s.mountpoint, rel); err == nil && !strings.HasPrefix(r, "..") {
			rel = r
		} else if r, err := filepath.Rel(s.backing, rel); err == nil && !strings.HasPrefix(r, "..") {
			rel = r
		} else {
			return "", fmt.Errorf("%q is not below the store", rel)
		}
	}
	rel = filepath.Clean(rel)
	if rel == "." {
		return "", nil
	}
	if strings.HasPrefix(rel, "../") || rel == ".." {
		return "", fmt.Errorf("%q leaves the store", rel)
	}
	return rel, nil
}

// Reload applies the backing tree as a new catalog revision, as a client
// does after a publish: every path the kernel knows that is gone (or
// changed type) is invalidated; its open descriptors get ENOENT on read
// and fstat, and lookups of it ENOENT. Files kept stay in the caches.
func (s *Store) Reload() {
	s.revision.Add(1)
	type gone struct {
		n      *node
		name   string
		parent *fs.Inode
	}
	var removed []gone
	s.mu.Lock()
	for n := range s.nodes {
		if n.stale.Load() {
			continue
		}
		var st unix.Stat_t
		err := unix.Lstat(filepath.Join(s.backing, n.rel), &st)
		if err == nil && st.Mode&unix.S_IFMT == n.StableAttr().Mode&unix.S_IFMT {
			continue
		}
		n.stale.Store(true)
		delete(s.nodes, n)
		s.gens[n.rel]++
		delete(s.fetched, n.key())
		delete(s.hashes, n.rel)
		removed = append(removed, gone{n: n})
	}
	s.mu.Unlock()
	// Notifications go to the kernel outside the lock: it may call back.
	for _, g := range removed {
		g.n.NotifyContent(0, 0) // drops its pages and attributes
		if name, parent := g.n.Parent(); parent != nil {
			parent.NotifyEntry(name)
		}
	}
}

// Crash aborts the FUSE connection, as when the client process dies: every
// request on the mount answers ENOTCONN until Close.
func (s *Store) Crash() error {
	dev, err := mountDev(s.mountpoint)
	if err != nil {
		return err
	}
	// The FUSE control filesystem is not always mounted (it is not in
	// containers and on some VMs).
	if ok, _ := mountutil.IsMounted(fusectl); !ok {
		if err := unix.Mount("none", fusectl, "fusectl", 0, ""); err != nil {
			return fmt.Errorf("mount fusectl: %w", err)
		}
	}
	return os.WriteFile(fmt.Sprintf("%s/%d/abort", fusectl, dev), []byte("1"), 0)
}

// fusectl is where the FUSE control filesystem is normally mounted.
const fusectl = "/sys/fs/fuse/connections"

// mountDev returns the minor device number of the mount at mountpoint (its
// FUSE connection's number).
func mountDev(mountpoint string) (uint32, error) {
	ms, err := mountutil.Under(filepath.Dir(mountpoint))
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if m.Mountpoint == mountpoint {
			return uint32(m.Minor), nil
		}
	}
	return 0, fmt.Errorf("%q is not mounted", mountpoint)
}

// Close unmounts the store (lazily if busy) and stops its server; hung
// lookups are released first. Safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.hangMu.Lock()
	select {
	case <-s.release:
	default:
		close(s.release)
	}
	s.hangMu.Unlock()
	if err := s.server.Unmount(); err != nil {
		if err := mountutil.Unmount(s.mountpoint); err != nil {
			return err
		}
	}
	return nil
}

// register records n as known to the kernel.
func (s *Store) register(n *node) {
	s.mu.Lock()
	s.nodes[n] = struct{}{}
	s.mu.Unlock()
}

// forget drops n.
func (s *Store) forget(n *node) {
	s.mu.Lock()
	delete(s.nodes, n)
	s.mu.Unlock()
}

// stable returns the identity of a node at rel: its inode number derives
// from the path (a path added again gets the same one, as catalog rows
// do), its generation from how often rel was removed.
func (s *Store) stable(rel string, mode uint32) fs.StableAttr {
	s.mu.Lock()
	gen := s.gens[rel]
	s.mu.Unlock()
	return fs.StableAttr{Mode: mode & syscall.S_IFMT, Ino: inoOf(rel), Gen: gen}
}

// inoOf returns the inode number of rel: 1 for the root, else a hash of the
// path, never 0 or 1.
func inoOf(rel string) uint64 {
	if rel == "" {
		return 1
	}
	h := fnv.New64a()
	h.Write([]byte(rel))
	ino := h.Sum64() >> 1 // stays positive as a signed number too
	if ino < 2 {
		ino += 2
	}
	return ino
}

// miss charges the miss delay if the file at key is not in the cache yet.
// An open of a file whose fetch is under way waits for that fetch, as a
// cvmfs2 client's does for a download in flight, and is not a miss.
func (s *Store) miss(ctx context.Context, key string) {
	s.mu.Lock()
	done, hit := s.fetched[key]
	if !hit {
		done = make(chan struct{})
		s.fetched[key] = done
	}
	s.mu.Unlock()
	if hit {
		select {
		case <-done:
		case <-ctx.Done():
		}
		return
	}
	defer close(done)
	s.misses.Add(1)
	if d := time.Duration(s.missDelay.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}
