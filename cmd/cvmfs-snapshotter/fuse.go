package main

import (
	"context"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
)

var _ snapshot.LayerFS = (*fusefs.Manager)(nil)

// newFUSEBackend builds the FUSE manager that serves every remote layer.
func newFUSEBackend(ctx context.Context, cfg config, repo *ducc.Repo) (backend, error) {
	acct, err := fusefs.ParseAccounting(cfg.Accounting)
	if err != nil {
		return backend{}, err
	}
	attrs, err := cache.New(cfg.AttrCacheSize)
	if err != nil {
		return backend{}, err
	}
	m, err := fusefs.NewManager(repo,
		fusefs.WithAccounting(acct),
		fusefs.WithTimeouts(time.Duration(cfg.EntryTimeout), time.Duration(cfg.AttrTimeout), time.Duration(cfg.NegativeTimeout)),
		fusefs.WithCache(attrs),
		fusefs.WithProfileLimit(cfg.ProfileLimit),
	)
	if err != nil {
		return backend{}, err
	}
	return backend{layers: sizedLayerFS{LayerFS: m, repo: repo}, stats: m, close: m.Close}, nil
}
