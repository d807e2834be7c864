package snapshot

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/continuity/fs"
	"github.com/containerd/log"
)

// Commit turns the active snapshot key into the committed snapshot name,
// recording the disk usage of its upper dir.
func (s *snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		id, _, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return err
		}
		du, err := fs.DiskUsage(ctx, s.upperPath(id))
		if err != nil {
			return fmt.Errorf("failed to compute disk usage of %q: %w", key, err)
		}
		if _, err := storage.CommitActive(ctx, key, name, snapshots.Usage(du), opts...); err != nil {
			return fmt.Errorf("failed to commit snapshot %s: %w", key, err)
		}
		return nil
	})
}

// Remove deletes the snapshot key. A remote layer is unmounted first; a
// directory that still has anything mounted beneath it is never removed
// (it is logged and left for Cleanup).
func (s *snapshotter) Remove(ctx context.Context, key string) error {
	var id string
	err := s.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		id, _, err = storage.Remove(ctx, key)
		if err != nil {
			return fmt.Errorf("failed to remove snapshot %s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.removeDir(ctx, id); err != nil {
		log.G(ctx).WithError(err).WithField("key", key).Warn("snapshot removed, its directory left for Cleanup")
	}
	return nil
}

// removeDir unmounts snapshot id's remote layer, if any, and deletes its
// directory unless something is still mounted under it.
func (s *snapshotter) removeDir(ctx context.Context, id string) error {
	dir := s.snapshotDir(id)
	if rl := s.forget(id); rl != nil {
		if err := s.config.layers.Unmount(ctx, s.upperPath(id)); err != nil {
			return fmt.Errorf("unmount layer %s: %w", rl.layer, err)
		}
	}
	return removeUnmounted(dir)
}

func removeUnmounted(dir string) error {
	mounted, err := hasMountsUnder(dir)
	if err != nil {
		return err
	}
	if mounted {
		return fmt.Errorf("refusing to remove %s: something is mounted beneath it", dir)
	}
	return os.RemoveAll(dir)
}
