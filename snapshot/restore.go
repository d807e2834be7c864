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
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// restoreParallel bounds concurrent mounts at start: each may wait up to
// the lookup timeout on a slow layer store.
const restoreParallel = 8

// restoreEntry is a committed remote snapshot to mount again.
type restoreEntry struct {
	id   string
	info snapshots.Info
	// parent is the parent's chain ID, or parentErr why it is unknown.
	parent    string
	parentErr error
	// checked: the chain check has run (or is off).
	checked bool
}

// restore re-mounts every committed remote snapshot recorded in the
// metadata, once its chain checks out (chain.go; a snapshot that does not
// is kept, reported unavailable, and checked again whenever something
// stacks on it). Snapshots an earlier version marked remote are migrated
// first (migrateLegacy). A mount that still answers is kept; a dead one left
// by a previous run (a FUSE mount after a crash answers ENOTCONN) is
// detached lazily first. A layer that cannot be mounted, or whose label
// does not parse, is logged and marked unavailable; its snapshot is kept.
func (s *snapshotter) restore(ctx context.Context) error {
	var todo, legacy []restoreEntry
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
			if info.Kind != snapshots.KindCommitted {
				continue
			}
			_, remote := info.Labels[LabelRemote]
			_, old := info.Labels[legacyLabelRemote]
			if !remote && !old {
				continue
			}
			e := restoreEntry{id: id, info: info, checked: !s.config.chainCheck}
			e.parent, e.parentErr = parentChain(ctx, info.Parent)
			if remote {
				todo = append(todo, e)
			} else {
				legacy = append(legacy, e)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	migrated, failed := s.migrateLegacy(ctx, legacy)
	todo = append(todo, migrated...)

	s.unmountLeftovers(ctx, todo)
	for _, f := range failed {
		s.settleLegacy(ctx, f.entry, f.err)
	}

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
		if !e.checked {
			rl.check = s.restoredCheck(e, layer)
		}
		s.mu.Lock()
		s.remote[e.id] = rl
		s.mu.Unlock()
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer func() { <-sem; wg.Done() }()
			rl.mu.Lock()
			defer rl.mu.Unlock()
			if rl.check != nil {
				if err := rl.check(ctx); err != nil {
					rl.unavailable = err
					logger.WithError(err).WithField("reason", chainReason(err)).Error("remote snapshot's chain does not check out; not mounted, snapshot kept, reported unavailable")
					return
				}
				rl.check = nil
			}
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

// restoredCheck returns the chain check of a restored snapshot: the chain
// it is committed under must be the one layer makes on its parent.
func (s *snapshotter) restoredCheck(e restoreEntry, layer digest.Digest) func(context.Context) error {
	return func(ctx context.Context) error {
		if e.parentErr != nil {
			return e.parentErr
		}
		return s.checkChain(ctx, layer, e.info.Name, e.parent, e.info.Labels)
	}
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
