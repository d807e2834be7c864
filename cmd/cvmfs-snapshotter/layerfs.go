package main

import (
	"context"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/bindmount"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/custody"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

var (
	_ snapshot.LayerFS         = (*bindmount.Mounter)(nil)
	_ snapshot.LayerSizer      = sizedLayerFS{}
	_ snapshot.LayerRootStater = sizedLayerFS{}
	_ snapshot.LayerDiffIDer   = sizedLayerFS{}
)

// sizedLayerFS adds what the repository knows without a mount to a
// LayerFS: recorded layer sizes (Usage never walks a mount), diff IDs (the
// chain check) and the layer root's attributes (the daemon never stats
// through its own FUSE mounts).
type sizedLayerFS struct {
	snapshot.LayerFS
	repo *ducc.Repo
}

func (s sizedLayerFS) LayerSize(ctx context.Context, layer digest.Digest) (int64, error) {
	return s.repo.DiffSize(ctx, layer)
}

func (s sizedLayerFS) LayerDiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error) {
	return s.repo.DiffID(ctx, layer)
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
	stats  usage.Source
	close  func(context.Context) error
	// keepMounts is set when the mounts outlive the daemon (a custody, a
	// separate FUSE server): stopping the daemon leaves them mounted.
	keepMounts bool
	// records is where the FUSE manager's prefetch finds the usage
	// records once they are open.
	records *usageRecords
}

// newBackend builds the configured layer filesystem: read-only bind
// mounts, a FUSE manager in this process, or a separate FUSE server under
// a fuseremote.Supervisor.
func newBackend(ctx context.Context, cfg config.Config, f flags) (backend, error) {
	repo := ducc.New(cfg.AbsoluteMountpoint)
	records := new(usageRecords)
	checkOwnership(ctx, repo)
	sized := func(l snapshot.LayerFS) sizedLayerFS { return sizedLayerFS{LayerFS: l, repo: repo} }
	nothing := func(context.Context) error { return nil }
	if cfg.MountMode == config.ModeBind || cfg.FUSEServer == config.FUSESeparate {
		releaseCustody(ctx, f.root)
	}
	switch {
	case cfg.MountMode == config.ModeBind:
		return backend{layers: sized(bindmount.New(repo)), close: nothing}, nil
	case cfg.FUSEServer == config.FUSESeparate:
		sock := cfg.FUSEServerSocketPath(f.root)
		sup, err := fuseremote.NewSupervisor(f.root, sock, fuseServerCommand(f, sock), cfg.SupervisorOpts()...)
		if err != nil {
			return backend{}, err
		}
		if err := sup.Start(ctx); err != nil {
			if !errdefs.IsUnavailable(err) {
				return backend{}, err
			}
			log.G(ctx).WithError(err).WithField("socket", sock).
				Error("the FUSE server does not answer and was not replaced; remote layers are unavailable until it answers")
		}
		return backend{layers: sized(sup), stats: sup, close: nothing, keepMounts: true}, nil
	default:
		// The custody keeps every mount's FUSE connection while no
		// daemon serves it, so that running containers outlive this
		// process; it runs before the Manager serves anything.
		cl := custody.NewClient(custodySocket(f.root))
		opts := []fusefs.Opt{fusefs.WithStateDir(layerStateDir(f.root))}
		if err := cl.Ensure(ctx, custodyCommand(f), custodyLog(f.root)); err != nil {
			log.G(ctx).WithError(err).Error("no custody of FUSE connections: layer mounts end with this daemon")
			cl = nil
		} else {
			opts = append(opts, fusefs.WithCustody(cl))
		}
		m, err := newManager(cfg, repo, records, opts...)
		if err != nil {
			return backend{}, err
		}
		if cl == nil {
			return backend{layers: sized(m), stats: m, close: m.Close, records: records}, nil
		}
		adoptAll(ctx, cl, m)
		wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
		go cl.Watch(wctx, custodyCommand(f), custodyLog(f.root), m.KeepAll)
		closeAll := func(ctx context.Context) error {
			stopWatch()
			err := m.Close(ctx)
			cl.Close()
			// Last: the process exits next.
			m.Quiesce(ctx)
			return err
		}
		return backend{layers: sized(m), stats: m, close: closeAll, keepMounts: true, records: records}, nil
	}
}

// checkOwnership logs at Error, at start, a repository whose CVMFS client
// presents every file as its own (CVMFS_CLAIM_OWNERSHIP=yes): every layer
// is then refused and pulled. A repository that is not there yet (autofs
// mounts it on first access) or does not answer is left to the Prepares.
func checkOwnership(ctx context.Context, repo *ducc.Repo) {
	cctx, cancel := context.WithTimeout(ctx, ownershipCheckTimeout)
	defer cancel()
	if err := repo.CheckOwnership(cctx); errdefs.IsPermissionDenied(err) {
		log.G(ctx).WithError(err).Error("the layer store is not served: every layer is pulled")
	}
}

// ownershipCheckTimeout bounds checkOwnership, so that a stuck CVMFS client
// delays the start by no more.
const ownershipCheckTimeout = 2 * time.Second
