package cache

import (
	"fmt"
	"sync/atomic"

	"github.com/containerd/errdefs"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
)

// ErrInvalidSize is returned by New for a size below 1; it wraps
// errdefs.ErrInvalidArgument.
var ErrInvalidSize = fmt.Errorf("cache size must be at least 1: %w", errdefs.ErrInvalidArgument)

// DefaultSize is a reasonable number of entries for a daemon serving a few
// hundred layers: about 100 bytes each plus the path.
const DefaultSize = 1 << 18

// Attr is the subset of stat(2) that a FUSE server presents for an entry.
// Times are split into seconds and nanoseconds as in struct stat.
type Attr struct {
	Ino       uint64
	Size      uint64
	Blocks    uint64
	Atime     int64
	Mtime     int64
	Ctime     int64
	AtimeNsec uint32
	MtimeNsec uint32
	CtimeNsec uint32
	Mode      uint32 // file type and permission bits, as st_mode
	Nlink     uint32
	UID       uint32
	GID       uint32
	Rdev      uint32
	Blksize   uint32
}

// Entry is what the cache remembers about one path of one layer.
type Entry struct {
	// Attr is the attribute set to present; zero for a negative entry.
	Attr Attr
	// Negative records that the path does not exist (as presented).
	Negative bool
	// Whiteout records that the entry is synthesised from a ".wh.<name>"
	// marker and has no backing file of its own.
	Whiteout bool
	// Opaque records that the directory holds an opaque marker.
	Opaque bool
}

type key struct {
	layer digest.Digest
	path  string
}

// Attrs is a bounded LRU of entries keyed by layer digest and path. It is
// safe for concurrent use; the zero value is not usable, call New.
type Attrs struct {
	lru    *lru.Cache[key, Entry]
	hits   atomic.Int64
	misses atomic.Int64
}

// New returns a cache holding at most size entries. It returns
// ErrInvalidSize if size < 1.
func New(size int) (*Attrs, error) {
	if size < 1 {
		return nil, fmt.Errorf("%w: %d", ErrInvalidSize, size)
	}
	l, err := lru.New[key, Entry](size)
	if err != nil {
		return nil, fmt.Errorf("create lru: %w", err)
	}
	return &Attrs{lru: l}, nil
}

// Get returns the entry for path in layer and counts a hit or a miss.
func (c *Attrs) Get(layer digest.Digest, path string) (Entry, bool) {
	e, ok := c.lru.Get(key{layer, path})
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return e, ok
}

// Add records e for path in layer, evicting the least recently used entry
// when full.
func (c *Attrs) Add(layer digest.Digest, path string, e Entry) {
	c.lru.Add(key{layer, path}, e)
}

// AddNegative records that path does not exist in layer.
func (c *Attrs) AddNegative(layer digest.Digest, path string) {
	c.lru.Add(key{layer, path}, Entry{Negative: true})
}

// Hits returns the number of Get calls that found an entry.
func (c *Attrs) Hits() int64 { return c.hits.Load() }

// Misses returns the number of Get calls that found none.
func (c *Attrs) Misses() int64 { return c.misses.Load() }

// Len returns the number of entries held.
func (c *Attrs) Len() int { return c.lru.Len() }
