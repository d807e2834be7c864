package snapshot

import (
	"context"
	"fmt"
	"maps"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// prepareRemote tries to serve the active snapshot key (id), on parent,
// from the layer store. With the chain check on, the layer is mounted only
// if it makes req.target (chain.go). On success it commits the snapshot
// under req.target and returns an error wrapping ErrAlreadyExists. It
// returns nil when the caller should fall back to an ordinary pull, having
// logged why.
func (s *snapshotter) prepareRemote(ctx context.Context, key, parent, id string, req remoteRequest) error {
	logger := log.G(ctx).WithField("key", key).WithField("layer", req.layer)
	if s.config.chainCheck {
		if err := s.checkRemoteRequest(ctx, parent, req); err != nil {
			reason := chainReason(err)
			entry := logger.WithError(err).WithField("target", req.target).WithField("reason", reason)
			switch reason {
			case ReasonChainMismatch, ReasonNoDiffID:
				entry.Warn("layer not served from the layer store: its chain does not check out, pulling it")
			case ReasonRefused:
				entry.Error("the layer store refuses to serve the layer, pulling it")
			default:
				entry.Info("layer not served from the layer store, pulling it")
			}
			s.observe(ctx, req.labels, req.layer, reason)
			return nil
		}
	}
	if err := s.mountLayer(ctx, id, req.layer); err != nil {
		reason := fallbackReason(err, req.labels[LabelLayerMediaType])
		if reason == ReasonRefused {
			logger.WithError(err).Error("the layer store refuses to serve the layer, pulling it")
		} else {
			logger.WithError(err).Info("layer not served from the layer store, pulling it")
		}
		s.observe(ctx, req.labels, req.layer, reason)
		return nil
	}
	usage := snapshots.Usage{}
	if sizer, ok := s.config.layers.(LayerSizer); ok {
		size, err := s.layerSize(ctx, sizer, req.layer)
		if err != nil {
			// The layer is served all the same; Usage asks again.
			logger.WithError(err).Warn("size of layer unknown, committed without it")
			size = sizeUnknown
		}
		usage.Size = size
	}
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, info, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return err
		}
		labels := maps.Clone(info.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		labels[LabelRemote] = req.layer.String()
		if _, err := storage.CommitActive(ctx, key, req.target, usage, snapshots.WithLabels(labels)); err != nil {
			return err
		}
		return nil
	})
	if err == nil {
		s.observe(ctx, req.labels, req.layer, "")
		logger.WithField("remote-snapshot-prepared", true).WithField("target", req.target).Info("layer served from the layer store")
		return fmt.Errorf("target snapshot %q: %w", req.target, errdefs.ErrAlreadyExists)
	}

	// The commit failed: undo the mount. If the target appeared meanwhile
	// (a concurrent Prepare of the same chain), drop our active snapshot and
	// report the target as existing; otherwise fall back to a pull.
	s.forget(id)
	if uerr := s.config.layers.Unmount(ctx, s.upperPath(id)); uerr != nil {
		logger.WithError(uerr).Error("failed to unmount layer after a failed commit")
		return fmt.Errorf("commit remote snapshot %q: %w (and unmount: %v)", req.target, err, uerr)
	}
	if errdefs.IsAlreadyExists(err) {
		if rerr := s.Remove(ctx, key); rerr != nil {
			logger.WithError(rerr).Warn("failed to remove the extraction snapshot of a layer that already exists")
		}
		return fmt.Errorf("target snapshot %q: %w", req.target, errdefs.ErrAlreadyExists)
	}
	logger.WithError(err).Warn("failed to commit remote snapshot, pulling the layer")
	s.observe(ctx, req.labels, req.layer, ReasonMountFailed)
	return nil
}

// mountLayer mounts layer on snapshot id's fs dir within the lookup timeout
// and records it as remote.
func (s *snapshotter) mountLayer(ctx context.Context, id string, layer digest.Digest) error {
	mctx, cancel := context.WithTimeout(ctx, s.config.lookupTimeout)
	defer cancel()
	if err := s.config.layers.Mount(mctx, s.upperPath(id), layer); err != nil {
		return err
	}
	s.mu.Lock()
	s.remote[id] = &remoteLayer{layer: layer}
	s.mu.Unlock()
	return nil
}

func (s *snapshotter) forget(id string) *remoteLayer {
	s.mu.Lock()
	defer s.mu.Unlock()
	rl := s.remote[id]
	delete(s.remote, id)
	return rl
}

// ensureMounted checks that snapshot id, if remote, is served, and revives
// a dead mount (lazy unmount, mount again). It returns an error wrapping
// errdefs.ErrUnavailable when the layer cannot be served.
func (s *snapshotter) ensureMounted(ctx context.Context, id string) error {
	s.mu.Lock()
	rl := s.remote[id]
	s.mu.Unlock()
	if rl == nil {
		return nil
	}
	if rl.broken != nil {
		return fmt.Errorf("remote snapshot %s: %v: %w", id, rl.broken, errdefs.ErrUnavailable)
	}
	rl.mu.Lock()
	defer rl.mu.Unlock()
	path := s.upperPath(id)
	if rl.unavailable == nil {
		cerr := s.config.layers.Check(ctx, path)
		if cerr == nil {
			rl.removed = false
			return nil
		}
		if errdefs.IsFailedPrecondition(cerr) {
			// The store no longer holds the layer: mounting it again
			// cannot help, and the mount stays for the running
			// containers that hold it.
			if !rl.removed {
				rl.removed = true
				log.G(ctx).WithError(cerr).WithField("layer", rl.layer).WithField("mountpoint", path).
					Error("remote layer removed from the layer store: snapshots stacked on it fail until the image is pulled again")
			}
			return fmt.Errorf("layer %s (snapshot %s) is no longer in the layer store, removed while in use: "+
				"remove the image and pull it again, its layers then come from the registry: %v: %w", rl.layer, id, cerr, errdefs.ErrUnavailable)
		}
		log.G(ctx).WithError(cerr).WithField("layer", rl.layer).WithField("mountpoint", path).Warn("remote layer mount is dead, re-mounting")
	}
	if err := s.revive(ctx, path, rl); err != nil {
		rl.unavailable = err
		return fmt.Errorf("remote layer %s of snapshot %s: %v: %w", rl.layer, id, err, errdefs.ErrUnavailable)
	}
	rl.unavailable = nil
	return nil
}

// revive runs rl's pending chain check, if any, then mounts its layer again
// at path. rl.mu must be held.
func (s *snapshotter) revive(ctx context.Context, path string, rl *remoteLayer) error {
	if rl.check != nil {
		if err := rl.check(ctx); err != nil {
			return err
		}
		rl.check = nil
	}
	return s.remount(ctx, path, rl.layer)
}

// remount clears whatever is (or was) mounted at path, lazily if needed,
// and mounts layer there again.
func (s *snapshotter) remount(ctx context.Context, path string, layer digest.Digest) error {
	if err := s.config.layers.Unmount(ctx, path); err != nil {
		return fmt.Errorf("unmount: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, s.config.lookupTimeout)
	defer cancel()
	return s.config.layers.Mount(mctx, path, layer)
}

// sizeUnknown is the size recorded for a remote snapshot whose layer size
// could not be looked up at commit. Usage asks the layer store again.
const sizeUnknown = -1

// layerSize looks up layer's size within the lookup timeout. A negative
// size is an error.
func (s *snapshotter) layerSize(ctx context.Context, sizer LayerSizer, layer digest.Digest) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.config.lookupTimeout)
	defer cancel()
	size, err := sizer.LayerSize(ctx, layer)
	if err == nil && size < 0 {
		err = fmt.Errorf("negative size %d", size)
	}
	return size, err
}

// remoteUsage answers Usage for a remote snapshot committed with its size
// unknown, by asking the layer store again.
func (s *snapshotter) remoteUsage(ctx context.Context, key string, info snapshots.Info) (snapshots.Usage, error) {
	sizer, ok := s.config.layers.(LayerSizer)
	if !ok {
		return snapshots.Usage{}, fmt.Errorf("usage of remote snapshot %q: size unknown and no layer store to ask: %w", key, errdefs.ErrUnavailable)
	}
	layer, err := layerdigest.Parse(info.Labels[LabelRemote])
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("usage of remote snapshot %q: malformed label %s=%q: %w", key, LabelRemote, info.Labels[LabelRemote], errdefs.ErrUnavailable)
	}
	size, err := s.layerSize(ctx, sizer, layer)
	if err != nil {
		return snapshots.Usage{}, fmt.Errorf("usage of remote snapshot %q: size of layer %s unknown: %v: %w", key, layer, err, errdefs.ErrUnavailable)
	}
	return snapshots.Usage{Size: size}, nil
}
