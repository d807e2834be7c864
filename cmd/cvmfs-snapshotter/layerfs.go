package main

import (
	"context"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/bindmount"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/metrics"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
)

var (
	_ snapshot.LayerFS         = (*bindmount.Mounter)(nil)
	_ snapshot.LayerSizer      = sizedLayerFS{}
	_ snapshot.LayerRootStater = sizedLayerFS{}
)

// sizedLayerFS adds what the repository knows without a mount to a
// LayerFS: recorded layer sizes (Usage never walks a mount) and the layer
// root's attributes (the daemon never stats through its own FUSE mounts).
type sizedLayerFS struct {
	snapshot.LayerFS
	repo *ducc.Repo
}

func (s sizedLayerFS) LayerSize(ctx context.Context, layer digest.Digest) (int64, error) {
	return s.repo.DiffSize(ctx, layer)
}

func (s sizedLayerFS) StatLayerRoot(ctx context.Context, layer digest.Digest) (os.FileInfo, error) {
	dir, err := s.repo.OpenLayer(ctx, layer)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return dir.Stat()
}

// backend is the configured layer filesystem, its accounting (nil in bind
// mode) and the function that stops it.
type backend struct {
	layers sizedLayerFS
	stats  metrics.Source
	close  func(context.Context) error
	// keepMounts is set when the mounts outlive the daemon (a separate
	// FUSE server): stopping the daemon leaves them mounted.
	keepMounts bool
}

// newBackend builds the configured mounter.
func newBackend(ctx context.Context, cfg config, f flags) (backend, error) {
	repo := ducc.New(cfg.AbsoluteMountpoint)
	if cfg.MountMode == modeFUSE {
		return newFUSEBackend(ctx, cfg, f, repo)
	}
	return backend{
		layers: sizedLayerFS{LayerFS: bindmount.New(repo), repo: repo},
		close:  func(context.Context) error { return nil },
	}, nil
}
