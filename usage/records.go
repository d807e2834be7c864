package usage

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// LayerUsage is what is known of one layer's use across daemon runs: the
// figures of every FUSE session of the layer since the first, summed, with
// the merged per-file profile.
type LayerUsage struct {
	Layer digest.Digest
	// Accounting is the mode of the most recent session.
	Accounting Accounting
	// Files is the number of distinct files in Profile.
	Files int64
	// Opens and Bytes are summed over sessions (counted as
	// LayerStats.Opens and LayerStats.BytesRead are).
	Opens, Bytes            int64
	FirstAccess, LastAccess time.Time
	// Truncated is set when a session's profile or the merged one reached
	// the profile limit: Files and Profile then miss some files.
	Truncated bool
	// Mounted is set when the layer is mounted now (its figures still grow).
	Mounted bool
	// Profile is the merged per-file profile, most bytes first.
	Profile []FileAccess `json:",omitempty"`
}

// ImageLayer is one layer of an image as the snapshotter last saw it.
type ImageLayer struct {
	// Layer is the layer digest; "" when its label was absent or malformed.
	Layer digest.Digest `json:",omitempty"`
	// RawLayer is the digest label when it was malformed.
	RawLayer string `json:",omitempty"`
	// Served is set when the last unpack of the layer was served from the
	// layer store.
	Served bool
	// Reason says why the last unpack pulled it ("not-in-repository",
	// "lookup-timeout", "malformed-label", "no-label", "zstd", "not-gzip",
	// "mount-failed"); "" when Served.
	Reason string `json:",omitempty"`
	// Pulls counts the unpacks of the layer that fell back to a pull.
	Pulls int64
	// LastSeen is the time of its last unpack.
	LastSeen time.Time
}

// ImageUsage is an image and its layers, in the order they were unpacked
// (bottom first).
type ImageUsage struct {
	Image  string
	Layers []ImageLayer
	// Pulls counts the layer unpacks of the image that fell back to a pull.
	Pulls    int64
	LastSeen time.Time
}

// FullyServed reports whether every layer of the image was served from the
// layer store at its last unpack.
func (i ImageUsage) FullyServed() bool {
	for _, l := range i.Layers {
		if !l.Served {
			return false
		}
	}
	return true
}

// ReportRow is one layer of an image in a usage report: how much of the
// layer workloads read.
type ReportRow struct {
	Image  string
	Layer  digest.Digest `json:",omitempty"`
	Served bool
	Reason string `json:",omitempty"`
	// Accounting is the mode the figures were last counted in; "" when
	// nothing was read from the layer.
	Accounting string `json:",omitempty"`
	// FilesRead and BytesRead are the layer's cumulative usage
	// (LayerUsage.Files and LayerUsage.Bytes).
	FilesRead, BytesRead int64
	// FilesTotal and BytesTotal are the regular files of the layer and
	// their sizes, from one walk of the layer in the repository; both 0
	// with ContentsError set when that failed.
	FilesTotal, BytesTotal int64
	ContentsError          string `json:",omitempty"`
	// Counting is set while the layer's contents are being counted (in
	// the background: a later report has them).
	Counting bool `json:",omitempty"`
	// Truncated is LayerUsage.Truncated.
	Truncated bool
}

// Contents is what a layer holds: its regular files (whiteouts and
// repository markers excluded) and the sum of their sizes.
type Contents struct {
	Files, Bytes int64
}
