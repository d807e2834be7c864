//go:build linux

package fusefs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Source opens the directory holding a layer's unpacked tree. *ducc.Repo
// satisfies it. OpenLayer returns the directory itself (an O_PATH
// descriptor will do), checked and resolved once, so that nothing
// re-resolves a path that could be swapped for a symlink; the Manager
// closes it. It returns an error wrapping errdefs.ErrNotFound when the
// layer is absent.
type Source interface {
	OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error)
}

// Manager serves layers read-only at mountpoints, one FUSE server per
// mount, and keeps per-layer accounting. It satisfies the snapshotter's
// LayerFS interface. It is safe for concurrent use. The servers belong to
// the Manager, not to the calls that started them: Close stops them.
type Manager struct {
	src Source
	cfg config

	mu     sync.Mutex
	closed bool
	mounts map[string]*mount // by clean mountpoint; nil while being mounted
	// reserving is the layer of each mountpoint reserved in mounts (nil
	// there) while its Mount runs.
	reserving map[string]digest.Digest
	// layers holds the state of every layer mounted or being mounted; a
	// layer's entry (and so its accounting and metrics) is dropped when its
	// last mount goes, which bounds it by the layers in use.
	layers  map[digest.Digest]*layerState
	stopped []*mount // unmounted, server not yet exited (lazily detached, busy)
	// passthroughDevs holds, per device of a layer store (st_dev of the
	// layer roots), whether the kernel granted passthrough to the last
	// mount of a layer from it. The kernel's checks are per backing
	// filesystem and per process, so the next mount from the same store
	// can negotiate small requests (see setRequestSizes) before it learns
	// its own answer.
	passthroughDevs map[uint64]bool

	// walks are the layer walks in the background (see learnShape), one
	// at a time (walkSlot); Close cancels walkCtx and waits for them.
	walks      sync.WaitGroup
	walkSlot   chan struct{}
	walkCtx    context.Context
	walkCancel context.CancelFunc
	// prefetchJobs feeds the prefetch workers, prefetchConcurrency of
	// them across all layers, started with the first prefetch.
	prefetchJobs  chan prefetchJob
	prefetchStart sync.Once
	// dirJobs feeds serveDirJobs (see WithDirectoryPrefetch).
	dirJobs chan dirJob
	// pages reads prefetched files through the mounts; nil when prefetch
	// reads the backing trees.
	pages *pageReader
	// walk is walkShape; tests replace it.
	walk func(ctx context.Context, rootfd int) (layerShape, error)
}

// layerState is what the Manager keeps per digest; guarded by Manager.mu
// except for acct, which is safe on its own.
type layerState struct {
	acct *account
	// mounts counts the mounts served now; pending the Mounts in progress,
	// which hold the state (and its account) until they commit.
	mounts, pending int
	passthrough     bool
	// noXattrs is set once the layer is known to have no opaque
	// directory: its mounts then answer xattr requests with ENOSYS (see
	// layerShape). shapeKnown is set once its shape is known; walking while
	// a walk runs (under Manager.mu).
	noXattrs, shapeKnown atomic.Bool
	walking              bool
	// removed is set while the store no longer holds the layer (see
	// probeRemoved); probing while a look for it runs.
	removed, probing atomic.Bool
}

// mount is one served mountpoint.
type mount struct {
	mountpoint string
	layer      digest.Digest
	tree       *layerTree
	server     *fuse.Server
	done       chan struct{} // closed when the server loop has exited

	// ids gives the kernel node IDs that a successor can serve; journal
	// records them (see kernelIDs).
	ids     *kernelIDs
	journal *nodeJournal
	// dev is the mount's FUSE device, kept to hand to the custody, and
	// init and initReply its INIT exchange; dev is nil when go-fuse
	// mounted the layer itself (no custody then). id names the
	// connection in the custody.
	dev             *os.File
	init, initReply []byte
	id              string
	// at is the descriptor number go-fuse reads the device through.
	at int
}

// mode names how reads are served, for logs.
func (mt *mount) mode() string {
	if mt.tree.passthrough.Load() {
		return "passthrough"
	}
	return "userspace"
}

// FsNamePrefix starts the source field of every mount in
// /proc/self/mountinfo: "cvmfs-layer:sha256:<hex>". FsType is the type
// field. A restarted daemon finds its mounts by them.
const (
	FsNamePrefix = "cvmfs-layer:"
	FsType       = "fuse.cvmfs"
	fuseName     = "cvmfs"
)

// LayerFromFsName returns the layer digest of a mount source written by
// this package, and false for any other source.
func LayerFromFsName(source string) (digest.Digest, bool) {
	s, ok := strings.CutPrefix(source, FsNamePrefix)
	if !ok {
		return "", false
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", false
	}
	return d, true
}

// NewManager returns a Manager serving layers from src.
func NewManager(src Source, opts ...Opt) (*Manager, error) {
	if src == nil {
		return nil, fmt.Errorf("nil layer source: %w", errdefs.ErrInvalidArgument)
	}
	cfg := config{
		accounting:   DefaultAccounting,
		entryTimeout: DefaultTimeout,
		attrTimeout:  DefaultTimeout,
		negTO:        DefaultTimeout,
		profileLimit: usage.DefaultProfileLimit,
	}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.cache == nil {
		c, err := cache.New(cache.DefaultSize)
		if err != nil {
			return nil, err
		}
		cfg.cache = c
	}
	walkCtx, walkCancel := context.WithCancel(context.Background())
	var pages *pageReader
	if cfg.pageReader != nil && cfg.prefetch != nil && cfg.accounting == AccountReads {
		pages = &pageReader{argv: cfg.pageReader}
	}
	return &Manager{
		pages:      pages,
		src:        src,
		cfg:        cfg,
		mounts:     map[string]*mount{},
		reserving:  map[string]digest.Digest{},
		layers:     map[digest.Digest]*layerState{},
		walkSlot:   make(chan struct{}, 1),
		dirJobs:    make(chan dirJob, dirQueueLen),
		walkCtx:    walkCtx,
		walkCancel: walkCancel,
		walk:       walkShape,
	}, nil
}

// reserve claims mountpoint for a mount of layer. done is true if the same
// layer is already served there (Mount is then a no-op).
func (m *Manager) reserve(mountpoint string, layer digest.Digest) (done bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, fmt.Errorf("layer filesystem manager is closed: %w", errdefs.ErrUnavailable)
	}
	mt, busy := m.mounts[mountpoint]
	switch {
	case !busy:
		m.mounts[mountpoint] = nil
		m.reserving[mountpoint] = layer
		m.layerLocked(layer).pending++
		return false, nil
	case mt != nil && mt.layer == layer:
		return true, nil
	default:
		return false, fmt.Errorf("mountpoint %q is in use by another mount: %w", mountpoint, errdefs.ErrAlreadyExists)
	}
}

// commit ends a Mount: it records the served mount in the slot reserved
// for it, or releases the slot when mt is nil. Called with a slot not
// reserved (Unmount failed after forget), it puts mt back in the table.
func (m *Manager) commit(mountpoint string, mt *mount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if layer, ok := m.reserving[mountpoint]; ok {
		delete(m.reserving, mountpoint)
		if ls := m.layers[layer]; ls != nil {
			ls.pending--
		}
		defer m.dropIdleLocked(layer) // runs before the unlock
		if mt == nil {
			delete(m.mounts, mountpoint)
			return
		}
	}
	if mt == nil {
		return
	}
	m.mounts[mountpoint] = mt
	ls := m.layers[mt.layer]
	if ls == nil {
		// Put back after its layer was dropped: keep counting into the
		// mount's own account.
		ls = &layerState{acct: mt.tree.acct}
		m.layers[mt.layer] = ls
	}
	ls.mounts++
	ls.passthrough = mt.tree.passthrough.Load()
}

// passthroughKnown reports whether the last mount of a layer from the
// store on device dev was granted passthrough.
func (m *Manager) passthroughKnown(dev uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.passthroughDevs[dev]
}

// notePassthrough records whether a mount of a layer from the store on
// device dev was granted passthrough.
func (m *Manager) notePassthrough(dev uint64, granted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.passthroughDevs == nil {
		m.passthroughDevs = map[uint64]bool{}
	}
	m.passthroughDevs[dev] = granted
}

// layerLocked returns the state of layer, creating it; m.mu must be held.
func (m *Manager) layerLocked(layer digest.Digest) *layerState {
	ls := m.layers[layer]
	if ls == nil {
		ls = &layerState{acct: newAccount(m.cfg.profileLimit)}
		m.layers[layer] = ls
	}
	return ls
}

// dropIdleLocked forgets the state of layer once no mount serves it and
// none is in progress; m.mu must be held. A later mount starts afresh.
func (m *Manager) dropIdleLocked(layer digest.Digest) {
	if ls := m.layers[layer]; ls != nil && ls.mounts <= 0 && ls.pending <= 0 {
		if p := ls.acct.prefetch.Load(); p != nil {
			p.stop() // its last mount is gone
		}
		delete(m.layers, layer)
	}
}

// state returns the state of layer (its accounting and shape), shared by
// all its mounts. The caller must hold a reservation for the layer (see
// reserve), which keeps the state alive until commit.
func (m *Manager) state(layer digest.Digest) *layerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.layerLocked(layer)
}

// forget drops the mount at mountpoint from the table and returns it; the
// layer's state goes with its last mount.
func (m *Manager) forget(mountpoint string) *mount {
	m.mu.Lock()
	defer m.mu.Unlock()
	mt := m.mounts[mountpoint]
	if mt == nil {
		return nil
	}
	delete(m.mounts, mountpoint)
	if ls := m.layers[mt.layer]; ls != nil {
		ls.mounts--
	}
	m.dropIdleLocked(mt.layer)
	return mt
}

// Stats returns the accounting of every layer mounted now (or being
// mounted), ordered by digest. It first looks for each mounted layer in
// the Source (within a few seconds), to report those removed from it. A layer's figures are summed over its
// mounts since it was last unmounted everywhere: the last Unmount of a
// layer drops them.
func (m *Manager) Stats() ([]usage.LayerStats, error) {
	m.probeAll(context.Background())
	m.mu.Lock()
	out := make([]usage.LayerStats, 0, len(m.layers))
	accts := make([]*account, 0, len(m.layers))
	for d, ls := range m.layers {
		out = append(out, usage.LayerStats{
			Layer:             d,
			Mounts:            ls.mounts,
			Passthrough:       ls.passthrough,
			Accounting:        m.cfg.accounting,
			BytesAreFileSizes: ls.passthrough,
			Removed:           ls.removed.Load(),
		})
		accts = append(accts, ls.acct)
	}
	m.mu.Unlock()
	for i := range out {
		accts[i].stats(&out[i])
	}
	slices.SortFunc(out, func(a, b usage.LayerStats) int { return strings.Compare(string(a.Layer), string(b.Layer)) })
	return out, nil
}

// Profile returns the per-file access profile of layer, most bytes first;
// nil for a layer not mounted now.
func (m *Manager) Profile(layer digest.Digest) ([]usage.FileAccess, error) {
	m.mu.Lock()
	ls := m.layers[layer]
	m.mu.Unlock()
	if ls == nil {
		return nil, nil
	}
	return ls.acct.profile(), nil
}

// cleanMountpoint returns the absolute, clean form of mountpoint.
func cleanMountpoint(mountpoint string) (string, error) {
	if mountpoint == "" {
		return "", fmt.Errorf("empty mountpoint: %w", errdefs.ErrInvalidArgument)
	}
	p, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("mountpoint %q: %w: %w", mountpoint, err, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// withDefaultTimeout bounds ctx by d unless it has a deadline already.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
