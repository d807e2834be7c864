package fusefs

import (
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Accounting is the accounting mode of a Manager's mounts (usage.Accounting,
// named here too so that options read fusefs.WithAccounting(fusefs.AccountBytes)).
type Accounting = usage.Accounting

// The accounting modes; see usage.Accounting.
const (
	AccountOpen  = usage.AccountOpen
	AccountBytes = usage.AccountBytes
	AccountReads = usage.AccountReads
	// DefaultAccounting is the mode of a Manager given no WithAccounting.
	DefaultAccounting = usage.DefaultAccounting
)

// Defaults. Layers are immutable, so the kernel may keep what it learnt for
// long; the timeouts only bound the memory the kernel spends on idle layers.
const (
	DefaultTimeout = time.Hour
	// defaultLookupTimeout bounds Source.Lookup when the caller's context
	// has no deadline: a stuck CVMFS client can hang a stat for minutes.
	defaultLookupTimeout = time.Minute
)

type config struct {
	accounting                       Accounting
	entryTimeout, attrTimeout, negTO time.Duration
	cache                            *cache.Attrs
	profileLimit                     int
	debug                            bool
	// requestLog, if set, receives go-fuse's log of every request (tests
	// and benchmarks count requests by opcode with it).
	requestLog   io.Writer
	noSelfAccess bool
	// stateDir keeps what the Manager learns of layers (their shape).
	stateDir string
	// custody keeps the mounts' connections while no daemon serves them.
	custody Custody
	// prefetch names what to read ahead of a layer's workloads.
	prefetch            ProfileSource
	prefetchConcurrency int
	prefetchMaxBytes    int64
	// prefetchDirs follows workloads' misses (see WithDirectoryPrefetch).
	prefetchDirs bool
	// pageReader, if set, starts the helper that prefetches through the
	// mounts (see WithPrefetchPages).
	pageReader []string
}

// Opt configures a Manager.
type Opt func(*config) error

// WithAccounting selects the accounting mode (default DefaultAccounting).
func WithAccounting(mode Accounting) Opt {
	return func(c *config) error {
		if !mode.Valid() {
			return fmt.Errorf("unknown accounting mode %d: %w", int(mode), errdefs.ErrInvalidArgument)
		}
		c.accounting = mode
		return nil
	}
}

// WithTimeouts sets how long the kernel caches entries, attributes and
// failed lookups (default DefaultTimeout each). Negative durations are
// rejected; zero disables that cache.
func WithTimeouts(entry, attr, negative time.Duration) Opt {
	return func(c *config) error {
		if entry < 0 || attr < 0 || negative < 0 {
			return fmt.Errorf("negative kernel cache timeout (entry %v, attr %v, negative %v): %w", entry, attr, negative, errdefs.ErrInvalidArgument)
		}
		c.entryTimeout, c.attrTimeout, c.negTO = entry, attr, negative
		return nil
	}
}

// WithCache shares c between this Manager's mounts (and any other user of
// c). By default each Manager makes one of cache.DefaultSize entries.
func WithCache(c *cache.Attrs) Opt {
	return func(cfg *config) error {
		if c == nil {
			return fmt.Errorf("nil attribute cache: %w", errdefs.ErrInvalidArgument)
		}
		cfg.cache = c
		return nil
	}
}

// WithProfileLimit bounds the number of paths kept in each layer's access
// profile (default usage.DefaultProfileLimit). Opens of further paths are still
// counted, but not profiled. 0 turns the profile off: opens are counted,
// no path is kept (UniqueFiles stays 0 and ProfileTruncated is set at the
// first open). A negative n returns an error wrapping
// errdefs.ErrInvalidArgument.
func WithProfileLimit(n int) Opt {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("profile limit %d is negative: %w", n, errdefs.ErrInvalidArgument)
		}
		c.profileLimit = n
		return nil
	}
}

// withRequestLog sends go-fuse's log of every request to w.
func withRequestLog(w io.Writer) Opt {
	return func(c *config) error {
		c.debug = true
		c.requestLog = w
		return nil
	}
}

// WithoutSelfAccess declares that this process never opens files on the
// mounts it serves (true of the daemon). The Manager then mounts with
// mount(2) itself and skips go-fuse's post-mount "poll hack", a lookup and
// open through the new mount from the serving process: a process killed
// while such a request is in flight can never exit. A process that does
// read its own mounts (tests) must not use it, or Go's poller may deadlock
// on them. Needs CAP_SYS_ADMIN; otherwise go-fuse mounts as usual.
func WithoutSelfAccess() Opt {
	return func(c *config) error {
		c.noSelfAccess = true
		return nil
	}
}

// WithStateDir keeps what the Manager learns of each layer once and for all
// (whether it has opaque directories, from one walk of its tree) in dir,
// created 0700 if missing, so that a restart need not walk the layers
// again. Without it every layer is walked once per Manager.
func WithStateDir(dir string) Opt {
	return func(c *config) error {
		if dir == "" {
			return fmt.Errorf("empty state directory: %w", errdefs.ErrInvalidArgument)
		}
		c.stateDir = dir
		return nil
	}
}
