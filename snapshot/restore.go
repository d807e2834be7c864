package snapshot

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// restoreParallel bounds concurrent mounts at start: each may wait up to
// the lookup timeout on a slow layer store.
const restoreParallel = 8

// restoreEntry is a committed remote snapshot to mount again.
type restoreEntry struct {
	id   string
	info snapshots.Info
}

// restore re-mounts every committed remote snapshot recorded in the
// metadata. A mount that still answers is kept; a dead one left by a
// previous run (a FUSE mount after a crash answers ENOTCONN) is detached
// lazily first. A
// layer that cannot be mounted, or whose label does not parse, is logged
// and marked unavailable; its snapshot is kept.
func (s *snapshotter) restore(ctx context.Context) error {
	var todo []restoreEntry
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		ids, err := storage.IDMap(ctx)
		if err != nil && !errdefs.IsNotFound(err) { // NotFound: a new, empty store
			return err
		}
		for id, name := range ids {
			_, info, _, err := storage.GetInfo(ctx, name)
			if err != nil {
				return err
			}
			if _, ok := info.Labels[LabelRemote]; ok && info.Kind == snapshots.KindCommitted {
				todo = append(todo, restoreEntry{id: id, info: info})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	s.unmountLeftovers(ctx, todo)

	var (
		wg  sync.WaitGroup
		sem = make(chan struct{}, restoreParallel)
	)
	for _, e := range todo {
		logger := log.G(ctx).WithField("key", e.info.Name).WithField("layer", e.info.Labels[LabelRemote])
		layer, err := layerdigest.Parse(e.info.Labels[LabelRemote])
		if err != nil {
			// Nothing can be mounted, yet the snapshot is a layer: its
			// children must not stack on an empty directory.
			s.mu.Lock()
			s.remote[e.id] = &remoteLayer{broken: fmt.Errorf("malformed label %s=%q: %v", LabelRemote, e.info.Labels[LabelRemote], err)}
			s.mu.Unlock()
			logger.WithError(err).Error("remote snapshot has a malformed layer label; it and its children are unavailable")
			continue
		}
		rl := &remoteLayer{layer: layer}
		s.mu.Lock()
		s.remote[e.id] = rl
		s.mu.Unlock()
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			rl.mu.Lock()
			defer rl.mu.Unlock()
			// A mount that still answers (a bind mount after a crash, or one
			// served by a process that outlived us) is kept: containers
			// running on it keep working.
			if err := s.config.layers.Check(ctx, s.upperPath(id)); err == nil {
				logger.Info("remote layer still mounted, kept")
				return
			}
			if err := s.remount(ctx, s.upperPath(id), layer); err != nil {
				rl.unavailable = err
				logger.WithError(err).Error("failed to restore remote layer; snapshot kept, reported unavailable")
				return
			}
			logger.Info("restored remote layer")
		}(e.id)
	}
	wg.Wait()
	return nil
}

// unmountLeftovers unmounts layers that a previous run left mounted at
// snapshot fs dirs other than those of committed remote snapshots: a crash
// between mounting a layer and committing its snapshot leaves one on an
// active extraction snapshot (or on a directory the metadata never
// recorded). Only mounts exactly at <root>/snapshots/<id>/fs of directories
// this metadata database created are touched; those are always ours.
func (s *snapshotter) unmountLeftovers(ctx context.Context, keep []restoreEntry) {
	kept := make(map[string]bool, len(keep))
	for _, e := range keep {
		kept[e.id] = true
	}
	snapshotsDir := filepath.Join(s.root, "snapshots")
	mps, err := mountpointsUnder(snapshotsDir)
	if err != nil {
		log.G(ctx).WithError(err).Warn("failed to list mounts left by a previous run")
		return
	}
	for _, mp := range mps {
		rel, err := filepath.Rel(snapshotsDir, mp)
		if err != nil {
			continue
		}
		id, rest, ok := strings.Cut(rel, string(filepath.Separator))
		if !ok || rest != "fs" || kept[id] {
			continue
		}
		if !s.owns(id) {
			// Left by another metadata database: a running container may
			// still stack on it.
			log.G(ctx).WithField("mountpoint", mp).Warn("kept a layer mount on a snapshot directory this metadata database did not create")
			continue
		}
		if err := s.config.layers.Unmount(ctx, mp); err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", mp).Error("failed to unmount a layer left by a previous run")
			continue
		}
		log.G(ctx).WithField("mountpoint", mp).Warn("unmounted a layer left mounted by a previous run on an uncommitted snapshot")
	}
}
