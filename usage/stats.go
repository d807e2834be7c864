package usage

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// LayerStats is the accounting of one layer digest, summed over its mounts
// since the layer was last unmounted everywhere (fusefs forgets a layer
// with its last mount).
type LayerStats struct {
	Layer digest.Digest
	// Mounts is the number of mounts of the layer served now.
	Mounts int
	// Passthrough reports whether kernel passthrough serves the reads of
	// the layer's mounts (of the most recent one, if they differ).
	Passthrough bool
	Accounting  Accounting
	// Removed is set when the layer store no longer holds the layer
	// although it is mounted (removed by the repository's garbage
	// collection): its mounts answer ENOENT, and new containers on it fail
	// until the image is pulled again.
	Removed bool `json:",omitempty"`

	// Readdirs counts the directory listings read from the backing tree
	// (the kernel keeps them, so a directory is read about once).
	Lookups, Getattrs, Opens, Readdirs, Readlinks int64
	// UniqueFiles is the number of distinct paths opened; it stops growing
	// at the profile limit (ProfileTruncated is then set).
	UniqueFiles int64
	// BytesRead is the bytes served to the kernel by read requests or, when
	// BytesAreFileSizes is set (accounting "open" with passthrough), the
	// sum of the sizes of the files opened: the daemon sees no reads then.
	BytesRead         int64
	BytesAreFileSizes bool
	// Reads is the number of read requests the daemon served; 0 under
	// passthrough.
	Reads int64
	// Errors counts failed requests by errno name ("EIO", "ESTALE",
	// "EROFS", ...). A lookup of a name that does not exist is not one
	// (see Absent); ENOENT here is an entry that existed (looked up
	// before, or held by its directory's listing) and is gone from the
	// layer store.
	Errors map[string]int64
	// Absent counts lookups of names, and reads of extended attributes,
	// that do not exist: overlayfs makes them in every layer as it merges
	// directories, so a healthy layer has many.
	Absent int64
	// Panics counts handler panics, answered with EIO.
	Panics                  int64
	FirstAccess, LastAccess time.Time
	// CacheHits and CacheMisses count this layer's lookups in the shared
	// attribute cache.
	CacheHits, CacheMisses int64
	ProfileTruncated       bool
	// PrefetchFiles and PrefetchBytes count what prefetch read of the
	// layer from the layer store (never counted as workload reads);
	// PrefetchHits the files a workload then read that prefetch had read.
	PrefetchFiles, PrefetchBytes, PrefetchHits int64
}

// DefaultProfileLimit bounds the paths of a layer's access profile: the
// live one the FUSE filesystem keeps per mount, and the merged one of the
// usage records.
const DefaultProfileLimit = 100_000

// FileAccess is one entry of a layer's access profile.
type FileAccess struct {
	Path  string // relative to the layer root, as presented
	Opens int64
	// Bytes is counted as LayerStats.BytesRead is.
	Bytes int64
}

// Source gives the live accounting of the layers it serves: a FUSE manager
// in this process (which always answers), or the client of a separate FUSE
// server (which says when it cannot).
type Source interface {
	// Stats returns every layer's figures, sorted by layer.
	Stats() ([]LayerStats, error)
	// Profile returns layer's per-file profile, most bytes first; nil
	// for a layer not served now.
	Profile(layer digest.Digest) ([]FileAccess, error)
}
