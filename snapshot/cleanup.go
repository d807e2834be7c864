package snapshot

import (
	"context"
	"os"
	"path/filepath"

	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Cleanup removes the directories of snapshots that no longer exist in the
// metadata (left by a failed Remove or a crash). Directories with anything
// still mounted beneath them are skipped and logged, never force-removed.
// It runs inside a write transaction so that no snapshot is being created
// meanwhile.
func (s *snapshotter) Cleanup(ctx context.Context) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		ids, err := storage.IDMap(ctx)
		if err != nil && !errdefs.IsNotFound(err) { // NotFound: a new, empty store
			return err
		}
		entries, err := os.ReadDir(filepath.Join(s.root, "snapshots"))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if _, ok := ids[e.Name()]; ok || !e.IsDir() {
				continue
			}
			dir := filepath.Join(s.root, "snapshots", e.Name())
			if err := s.unmountOwn(ctx, e.Name()); err != nil {
				log.G(ctx).WithError(err).WithField("path", dir).Warn("cleanup: failed to unmount orphaned layer")
				continue
			}
			if err := removeUnmounted(dir); err != nil {
				log.G(ctx).WithError(err).WithField("path", dir).Warn("cleanup: left orphaned snapshot directory")
				continue
			}
			log.G(ctx).WithField("path", dir).Debug("cleanup: removed orphaned snapshot directory")
		}
		return nil
	})
}
