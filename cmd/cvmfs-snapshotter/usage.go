package main

import (
	"context"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// openUsage opens the usage records under <root>/usage. In FUSE mode they
// follow be's live accounting, and be's unmounts go through the store so
// that a layer's session is folded into its record when its last mount
// goes.
func openUsage(ctx context.Context, cfg config.Config, f flags, be *backend) (*usagestore.Store, error) {
	repo := be.layers.repo
	opts := append(cfg.UsagestoreOpts(),
		usagestore.WithContents(func(ctx context.Context, layer digest.Digest) (usage.Contents, error) {
			files, bytes, err := repo.Contents(ctx, layer)
			return usage.Contents{Files: files, Bytes: bytes}, err
		}),
	)
	if be.stats != nil {
		opts = append(opts, usagestore.WithSource(be.stats))
	}
	st, err := usagestore.Open(ctx, filepath.Join(f.root, "usage"), opts...)
	if err != nil {
		return nil, err
	}
	if be.stats != nil {
		be.layers.LayerFS = trackedLayerFS{LayerFS: be.layers.LayerFS, store: st}
	}
	if be.records != nil {
		be.records.Store(st)
	}
	return st, nil
}

// trackedLayerFS runs every Unmount through the usage store.
type trackedLayerFS struct {
	snapshot.LayerFS
	store *usagestore.Store
}

func (t trackedLayerFS) Unmount(ctx context.Context, mountpoint string) error {
	return t.store.Unmounting(ctx, func() error { return t.LayerFS.Unmount(ctx, mountpoint) })
}

// recordLayers returns the snapshot option that records every layer unpack
// in st.
func recordLayers(st *usagestore.Store) snapshot.Opt {
	return snapshot.WithLayerObserver(st.Record)
}
