package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

var _ snapshot.LayerFS = (*fusefs.Manager)(nil)

// newManager builds the FUSE manager that serves every remote layer, with
// extra options after those of cfg.
func newManager(cfg config, repo *ducc.Repo, extra ...fusefs.Opt) (*fusefs.Manager, error) {
	acct, err := usage.ParseAccounting(cfg.Accounting)
	if err != nil {
		return nil, err
	}
	attrs, err := cache.New(cfg.AttrCacheSize)
	if err != nil {
		return nil, err
	}
	return fusefs.NewManager(repo, append([]fusefs.Opt{
		fusefs.WithAccounting(acct),
		fusefs.WithTimeouts(time.Duration(cfg.EntryTimeout), time.Duration(cfg.AttrTimeout), time.Duration(cfg.NegativeTimeout)),
		fusefs.WithCache(attrs),
		fusefs.WithProfileLimit(cfg.ProfileLimit),
		// The daemon never opens files on its own mounts.
		fusefs.WithoutSelfAccess(),
	}, extra...)...)
}

// layerStateDir is where the FUSE manager keeps what it learns of layers
// (see fusefs.WithStateDir).
func layerStateDir(root string) string { return filepath.Join(root, "layers") }

// newFUSEBackend serves layers through FUSE, in this process or through a
// separate fuse-server process.
func newFUSEBackend(ctx context.Context, cfg config, f flags, repo *ducc.Repo) (backend, error) {
	if cfg.FUSEServer == fuseSeparate {
		return newSeparateBackend(ctx, cfg, f, repo)
	}
	m, err := newManager(cfg, repo, fusefs.WithStateDir(layerStateDir(f.root)))
	if err != nil {
		return backend{}, err
	}
	return backend{layers: sizedLayerFS{LayerFS: m, repo: repo}, stats: m, close: m.Close}, nil
}
