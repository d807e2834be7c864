package snapshot

import (
	"context"
	"os"

	"github.com/opencontainers/go-digest"
)

// LayerFS mounts read-only image layers from a layer store. The snapshotter
// consumes it; implementations (FUSE, bind) live elsewhere and know nothing
// of snapshots.
type LayerFS interface {
	// Mount serves layer read-only at mountpoint, an existing empty
	// directory. It returns an error wrapping errdefs.ErrNotFound when the
	// store does not hold the layer, and errdefs.ErrUnavailable when the
	// store does not answer before ctx ends. On any error mountpoint is
	// left empty and unmounted. The same layer may be mounted at any number
	// of mountpoints at once.
	Mount(ctx context.Context, mountpoint string, layer digest.Digest) error
	// Check reports whether the mount at mountpoint is alive. It is called
	// on every Prepare, View and Mounts that stacks on the layer, so it
	// must be cheap. An error wrapping errdefs.ErrFailedPrecondition says
	// the store no longer holds the mounted layer: the snapshotter then
	// leaves the mount (running containers hold it) and fails the
	// snapshots stacked on it, naming the layer. Any other error makes it
	// mount the layer again.
	Check(ctx context.Context, mountpoint string) error
	// Unmount removes the mount at mountpoint: a plain unmount first, a lazy
	// one (MNT_DETACH) if it is busy or dead, never MNT_FORCE. Unmounting
	// something that is not mounted is not an error.
	Unmount(ctx context.Context, mountpoint string) error
}

// LayerSizer is implemented by a LayerFS that knows a layer's unpacked size
// without walking it (for example from repository metadata). The
// snapshotter uses it for Usage of remote snapshots; without it they report
// 0. When LayerSize fails (or gives a negative size) at commit, the error is
// logged at Warn, the layer is served all the same and committed with its
// size unknown; Usage then asks again and returns an error wrapping
// errdefs.ErrUnavailable while it still fails.
type LayerSizer interface {
	// LayerSize returns the layer's unpacked size in bytes, or an error
	// when the store has no usable record of it. ctx carries the lookup
	// timeout.
	LayerSize(ctx context.Context, layer digest.Digest) (int64, error)
}

// LayerRootStater is implemented by a LayerFS that can stat a layer's root
// directory in the store itself. The snapshotter gives a container's upper
// dir the owner and mode of the layer below; for a remote layer it asks
// here instead of stat'ing through the mount, because a daemon that makes
// syscalls through a FUSE mount it serves itself can hang forever if it is
// killed while one is in flight. Without it the upper dir keeps its default.
type LayerRootStater interface {
	StatLayerRoot(ctx context.Context, layer digest.Digest) (os.FileInfo, error)
}
