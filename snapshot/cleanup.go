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
// metadata (left by a failed Remove or a crash). It removes only
// directories this metadata database created (see owner.go): directories
// it never knew, such as those left by an earlier, deleted metadata.db, are
// logged at Warn and kept. A directory with anything mounted beneath it
// (other than its own layer mount, which is unmounted first), or used by
// an overlay mount as a lower, upper or work dir, is skipped and logged,
// never force-removed. It runs inside a write transaction so that no
// snapshot is being created meanwhile.
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
		var foreign []string
		for _, e := range entries {
			if _, ok := ids[e.Name()]; ok || !e.IsDir() {
				continue
			}
			if !s.owns(e.Name()) {
				foreign = append(foreign, e.Name())
				continue
			}
			dir := s.snapshotDir(e.Name())
			if err := s.removeDir(ctx, e.Name()); err != nil {
				log.G(ctx).WithError(err).WithField("path", dir).Warn("cleanup: left orphaned snapshot directory")
				continue
			}
			log.G(ctx).WithField("path", dir).Debug("cleanup: removed orphaned snapshot directory")
		}
		if len(foreign) > 0 {
			log.G(ctx).WithField("dirs", foreign).WithField("path", filepath.Join(s.root, "snapshots")).
				Warn("cleanup: kept snapshot directories this metadata database did not create; remove them by hand once no container uses them")
		}
		return nil
	})
}

// cleanupAtStart runs Cleanup unless the metadata holds no snapshot: a
// new or emptied database proves nothing about the directories on disk,
// so they are named in a warning and kept.
func (s *snapshotter) cleanupAtStart(ctx context.Context) error {
	var ids map[string]string
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) (err error) {
		ids, err = storage.IDMap(ctx)
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	if len(ids) > 0 {
		return s.Cleanup(ctx)
	}
	entries, err := os.ReadDir(filepath.Join(s.root, "snapshots"))
	if err != nil {
		return err
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if len(dirs) > 0 {
		log.G(ctx).WithField("dirs", dirs).WithField("path", filepath.Join(s.root, "snapshots")).
			Warn("metadata database holds no snapshots but snapshot directories exist; keeping them")
	}
	return nil
}
