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
// Labels only the snapshotter sets (LabelRemote) are dropped from opts.
func (s *snapshotter) Commit(ctx context.Context, name, key string, opts ...snapshots.Opt) error {
	opts = s.dropMarkers(ctx, key, opts)
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

// removeDir unmounts snapshot id's layer, if any, and deletes its
// directory. A mount exactly at the snapshot's fs dir is always one of
// ours (a layer mounted for it, even one a crash left behind before it was
// committed), so it is unmounted. Nothing is unmounted or deleted when the
// directory is still in use: another mount beneath it, or an overlay mount
// (a container's rootfs) using a directory in it as a lower, upper or work
// dir.
func (s *snapshotter) removeDir(ctx context.Context, id string) error {
	dir := s.snapshotDir(id)
	if err := checkUnused(dir, s.upperPath(id)); err != nil {
		return err
	}
	if err := s.unmountOwn(ctx, id); err != nil {
		return err
	}
	return removeUnmounted(dir)
}

// checkUnused returns an error if anything other than a mount at own is
// mounted at or below dir, or if an overlay mount uses dir.
func checkUnused(dir, own string) error {
	mps, err := mountpointsUnder(dir)
	if err != nil {
		return err
	}
	for _, mp := range mps {
		if mp != own {
			return fmt.Errorf("refusing to remove %s: %s is mounted beneath it", dir, mp)
		}
	}
	users, err := overlaysUsing(dir)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("refusing to remove %s: the overlay mounted at %q uses it", dir, users)
	}
	return nil
}

// unmountOwn unmounts whatever layer is mounted at snapshot id's fs dir,
// known to this process or left by an earlier one. Mounts deeper below are
// not ours and are left alone.
func (s *snapshotter) unmountOwn(ctx context.Context, id string) error {
	fsDir := s.upperPath(id)
	rl := s.forget(id)
	if rl == nil {
		mounted, err := isMounted(fsDir)
		if err != nil || !mounted {
			return err
		}
	}
	if s.config.layers != nil {
		if err := s.config.layers.Unmount(ctx, fsDir); err != nil {
			return fmt.Errorf("unmount layer of snapshot %s: %w", id, err)
		}
		return nil
	}
	return unmountPath(fsDir)
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
