package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/moby/sys/userns"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// DefaultLookupTimeout bounds how long Prepare waits for the layer store
// before falling back to a pull.
const DefaultLookupTimeout = 10 * time.Second

type config struct {
	layers        LayerFS
	lookupTimeout time.Duration
	userxattr     UserxattrMode
	// inUserNS detects a user namespace for UserxattrAuto.
	inUserNS   func() bool
	restore    bool
	keepMounts bool
	// observer, if set, learns of every layer unpack (observe.go).
	observer Observer
	// chainCheck: serve and restore layers only under the chain ID their
	// recorded diff ID makes (chain.go).
	chainCheck bool
}

// Opt configures a snapshotter.
type Opt func(*config) error

// WithLayerFS enables the remote path: layers are mounted from lfs. Without
// it the snapshotter is a plain overlay snapshotter.
func WithLayerFS(lfs LayerFS) Opt {
	return func(c *config) error {
		if lfs == nil {
			return fmt.Errorf("nil LayerFS: %w", errdefs.ErrInvalidArgument)
		}
		c.layers = lfs
		return nil
	}
}

// WithLookupTimeout bounds each layer lookup and mount at Prepare; past it
// the layer is pulled instead (default DefaultLookupTimeout). There is no
// "unbounded": a stuck layer store must not hang Prepare, so zero or a
// negative d returns an error wrapping errdefs.ErrInvalidArgument.
func WithLookupTimeout(d time.Duration) Opt {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("lookup timeout %v is not positive: %w", d, errdefs.ErrInvalidArgument)
		}
		c.lookupTimeout = d
		return nil
	}
}

// ValidateOpts applies opts as New does and returns the first error,
// without opening or mounting anything: a daemon checks its configuration
// with it before it starts.
func ValidateOpts(opts ...Opt) error {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return err
		}
	}
	return nil
}

// WithKeepMountsOnClose leaves remote layers mounted at Close. Use it when
// the LayerFS serves its mounts from a process that outlives the
// snapshotter: running containers keep their layers, and the next New keeps
// every mount that still answers.
func WithKeepMountsOnClose() Opt {
	return func(c *config) error {
		c.keepMounts = true
		return nil
	}
}

// WithoutRestore skips re-mounting remote snapshots at New (for tests).
func WithoutRestore() Opt {
	return func(c *config) error {
		c.restore = false
		return nil
	}
}

// snapshotter is a snapshots.Snapshotter over storage.MetaStore whose
// committed layers may be mounted from a LayerFS.
type snapshotter struct {
	root   string
	ms     *storage.MetaStore
	config config
	// ownerID identifies the metadata database; see owner.go.
	ownerID string
	// userxattr: overlay mounts carry the userxattr option.
	userxattr bool

	closeOnce sync.Once
	closeErr  error

	// mu guards remote: the snapshot ids whose fs dir is (or should be) a
	// LayerFS mount, and the layer each serves.
	mu     sync.Mutex
	remote map[string]*remoteLayer
}

// Snapshotter is the snapshots.Snapshotter returned by New, with Cleanup.
type Snapshotter interface {
	snapshots.Snapshotter
	snapshots.Cleaner
}

// defaultConfig is the configuration New starts from, before opts.
func defaultConfig() config {
	return config{
		lookupTimeout: DefaultLookupTimeout,
		userxattr:     UserxattrAuto,
		inUserNS:      userns.RunningInUserNS,
		restore:       true,
		chainCheck:    DefaultChainCheck,
	}
}

// New opens (or creates) a snapshotter rooted at root and, when a LayerFS is
// configured, re-mounts every remote snapshot recorded in its metadata. A
// layer that cannot be re-mounted is logged and reported unavailable; it is
// neither fatal nor deleted. It then runs Cleanup, except when the metadata
// holds no snapshot at all (a new or emptied metadata.db): then directories
// under <root>/snapshots are only logged at Warn and kept, since they may
// be the upper dirs of running containers. Directories newer than the
// metadata (an older metadata.db put back) are first moved aside and
// logged at Error, never deleted.
func New(ctx context.Context, root string, opts ...Opt) (Snapshotter, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots"), 0o700); err != nil {
		return nil, fmt.Errorf("create snapshotter root: %w", err)
	}
	dbPath := filepath.Join(root, "metadata.db")
	ownerID, issued, known, err := loadOwnerID(dbPath)
	if err != nil {
		return nil, err
	}
	ms, err := storage.NewMetaStore(dbPath)
	if err != nil {
		return nil, fmt.Errorf("open metadata: %w", err)
	}
	s := &snapshotter{
		root:      root,
		ms:        ms,
		config:    cfg,
		ownerID:   ownerID,
		userxattr: resolveUserxattr(cfg.userxattr, cfg.inUserNS),
		remote:    make(map[string]*remoteLayer),
	}
	log.G(ctx).WithField("mode", cfg.userxattr).WithField("userxattr", s.userxattr).Info("overlay userxattr option")
	if err := s.adoptKnownDirs(ctx); err != nil {
		ms.Close()
		return nil, err
	}
	// Before restore and cleanup, which would unmount or delete them.
	if err := s.setAsideNewer(ctx, issued, known); err != nil {
		ms.Close()
		return nil, err
	}
	if cfg.layers != nil && cfg.restore {
		if err := s.restore(ctx); err != nil {
			ms.Close()
			return nil, err
		}
	}
	if cfg.restore {
		// Directories a crash left behind (removed from the metadata, or
		// never recorded in it) go now rather than at containerd's next GC.
		if err := s.cleanupAtStart(ctx); err != nil {
			log.G(ctx).WithError(err).Warn("cleanup at start failed")
		}
	}
	return s, nil
}

func (s *snapshotter) snapshotDir(id string) string {
	return filepath.Join(s.root, "snapshots", id)
}

func (s *snapshotter) upperPath(id string) string {
	return filepath.Join(s.snapshotDir(id), "fs")
}

func (s *snapshotter) workPath(id string) string {
	return filepath.Join(s.snapshotDir(id), "work")
}

// remoteLayer is one remote snapshot's mount state.
type remoteLayer struct {
	layer digest.Digest
	// broken is set, for good, when the snapshot's remote label does not
	// name a layer: nothing can be mounted, and Mounts stacking on it
	// answer ErrUnavailable. Set before the layer is shared, then only read.
	broken error

	// mu serialises revivals of this mount and guards unavailable and
	// check.
	mu sync.Mutex
	// check, if set, is the chain check a restored snapshot must pass
	// before its layer is mounted again; cleared once passed.
	check func(ctx context.Context) error
	// unavailable is set when the layer could not be mounted (at restore,
	// or when a dead mount could not be revived). Mounts that stack on it
	// answer ErrUnavailable; the snapshot itself is never deleted for it.
	unavailable error
	// removed is set while Check reports that the store no longer holds
	// the layer (logged once).
	removed bool
}

// Stat returns the info of the snapshot key.
func (s *snapshotter) Stat(ctx context.Context, key string) (info snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	return info, err
}

// Update changes the labels of the snapshot, all of them (no fieldpaths,
// or "labels") or those named as "labels.<key>". The markers only the
// snapshotter sets (LabelRemote) are never added, changed or removed by it:
// a caller's are dropped and the snapshot's own kept, and the rest of the
// update applies. Dropping rather than refusing: containerd replaces a
// snapshot's labels with its own copy of them, which need not hold them.
func (s *snapshotter) Update(ctx context.Context, info snapshots.Info, fieldpaths ...string) (newInfo snapshots.Info, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, old, _, err := storage.GetInfo(ctx, info.Name)
		if err != nil {
			return err
		}
		if dropped := callerMarkers(info.Labels); len(dropped) > 0 {
			log.G(ctx).WithField("key", info.Name).WithField("labels", dropped).Warn("dropped labels only the snapshotter sets from an update")
		}
		info, paths, ok := keepMarkers(old.Labels, info, fieldpaths)
		if !ok {
			newInfo = old
			return nil
		}
		newInfo, err = storage.UpdateInfo(ctx, info, paths...)
		return err
	})
	return newInfo, err
}

// Usage returns the disk usage of a snapshot. Committed snapshots report
// what was recorded at commit; for remote ones that is the layer's size
// from the layer store (see LayerSizer), and the mount is never walked.
// Active snapshots are measured now. A remote snapshot whose size the
// store could not give at commit is looked up again; while that fails,
// Usage returns an error wrapping errdefs.ErrUnavailable rather than a
// made-up size (containerd logs it; `ctr snapshot usage` shows it).
func (s *snapshotter) Usage(ctx context.Context, key string) (usage snapshots.Usage, err error) {
	var (
		id   string
		info snapshots.Info
	)
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		id, info, usage, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return snapshots.Usage{}, err
	}
	if info.Kind == snapshots.KindCommitted && usage.Size < 0 {
		return s.remoteUsage(ctx, key, info)
	}
	if info.Kind == snapshots.KindActive {
		du, err := fs.DiskUsage(ctx, s.upperPath(id))
		if err != nil {
			return snapshots.Usage{}, err
		}
		usage = snapshots.Usage(du)
	}
	return usage, nil
}

// Walk calls fn for every snapshot matching filters.
func (s *snapshotter) Walk(ctx context.Context, fn snapshots.WalkFunc, filters ...string) error {
	return s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		return storage.WalkInfo(ctx, fn, filters...)
	})
}

// Close unmounts every remote layer (unless WithKeepMountsOnClose) and
// closes the metadata store. Committed
// snapshots and their directories stay on disk for the next start. It is
// idempotent.
func (s *snapshotter) Close() error {
	s.closeOnce.Do(func() {
		ctx := context.Background()
		var errs []error
		if s.config.layers != nil && !s.config.keepMounts {
			s.mu.Lock()
			ids := make([]string, 0, len(s.remote))
			for id := range s.remote {
				ids = append(ids, id)
			}
			s.mu.Unlock()
			paths := make([]string, len(ids))
			for i, id := range ids {
				paths[i] = s.upperPath(id)
			}
			if err := mountutil.UnmountEach(ctx, paths, func(ctx context.Context, mp string) error {
				err := s.config.layers.Unmount(ctx, mp)
				if err != nil {
					log.G(ctx).WithError(err).WithField("mountpoint", mp).Error("failed to unmount remote layer at close")
				}
				return err
			}); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.ms.Close(); err != nil {
			errs = append(errs, err)
		}
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("close snapshotter: %v", errs)
		}
	})
	return s.closeErr
}
