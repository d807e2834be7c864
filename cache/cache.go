package cache

import (
	"fmt"

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
	lru *lru.Cache[key, Entry]
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

// Get returns the entry for path in layer. It counts nothing: the FUSE
// layer counts hits and misses per layer, where they are reported.
func (c *Attrs) Get(layer digest.Digest, path string) (Entry, bool) {
	return c.lru.Get(key{layer, path})
}

// Add records e for path in layer (Entry{Negative: true}: the path does
// not exist), evicting the least recently used entry when full.
func (c *Attrs) Add(layer digest.Digest, path string, e Entry) {
	c.lru.Add(key{layer, path}, e)
}
