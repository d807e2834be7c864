package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// Prepare creates an active snapshot. When its labels ask for a layer that
// the LayerFS can mount, the layer is mounted and committed under its target
// name instead, and Prepare returns an error wrapping errdefs.ErrAlreadyExists
// (the remote-snapshot protocol); otherwise it returns writable mounts.
func (s *snapshotter) Prepare(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	opts = s.dropMarkers(ctx, key, opts)
	var base snapshots.Info
	for _, o := range opts {
		if err := o(&base); err != nil {
			return nil, err
		}
	}
	var (
		req    remoteRequest
		remote bool
	)
	if s.config.layers != nil {
		var err error
		req, remote, err = parseRemoteRequest(base.Labels)
		if err != nil {
			log.G(ctx).WithError(err).WithField("key", key).Warn("malformed layer digest label, pulling the layer instead")
			s.observe(ctx, base.Labels, "", ReasonMalformedLabel)
			remote = false
		} else if !remote && base.Labels[LabelTarget] != "" {
			s.observe(ctx, base.Labels, "", ReasonNoLabel)
		}
		if remote {
			if exists, err := s.targetExists(ctx, req.target); err != nil {
				return nil, err
			} else if exists {
				s.observeExisting(ctx, req)
				return nil, fmt.Errorf("target snapshot %q: %w", req.target, errdefs.ErrAlreadyExists)
			}
		}
	}
	sn, err := s.createSnapshot(ctx, snapshots.KindActive, key, parent, opts)
	if err != nil {
		return nil, err
	}
	if remote {
		if err := s.prepareRemote(ctx, key, parent, sn.ID, req); err != nil {
			return nil, err
		}
	}
	return s.mounts(ctx, sn, snapshots.KindActive)
}

// View creates a read-only snapshot of parent.
func (s *snapshotter) View(ctx context.Context, key, parent string, opts ...snapshots.Opt) ([]mount.Mount, error) {
	opts = s.dropMarkers(ctx, key, opts)
	sn, err := s.createSnapshot(ctx, snapshots.KindView, key, parent, opts)
	if err != nil {
		return nil, err
	}
	return s.mounts(ctx, sn, snapshots.KindView)
}

// Mounts returns the mounts of an active or view snapshot.
func (s *snapshotter) Mounts(ctx context.Context, key string) (_ []mount.Mount, err error) {
	var (
		sn   storage.Snapshot
		info snapshots.Info
	)
	err = s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		sn, err = storage.GetSnapshot(ctx, key)
		if err != nil {
			return fmt.Errorf("failed to get snapshot mount: %w", err)
		}
		_, info, _, err = storage.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s.mounts(ctx, sn, info.Kind)
}

// dropMarkers returns opts followed by withoutMarkers, having logged the
// markers the caller passed (an image's layer annotations reach us so).
func (s *snapshotter) dropMarkers(ctx context.Context, key string, opts []snapshots.Opt) []snapshots.Opt {
	var info snapshots.Info
	for _, o := range opts {
		if o(&info) != nil {
			break // the caller's error surfaces where opts are applied
		}
	}
	if dropped := callerMarkers(info.Labels); len(dropped) > 0 {
		log.G(ctx).WithField("key", key).WithField("labels", dropped).Warn("dropped labels only the snapshotter sets")
	}
	return append(slices.Clone(opts), withoutMarkers)
}

func (s *snapshotter) targetExists(ctx context.Context, target string) (bool, error) {
	var exists bool
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, _, _, err := storage.GetInfo(ctx, target)
		exists = err == nil
		if err != nil && !errdefs.IsNotFound(err) {
			return err
		}
		return nil
	})
	return exists, err
}

// createSnapshot records a new snapshot and creates its directory: made as
// a temporary directory and renamed into place inside the transaction, so
// a failure leaves neither metadata nor directory behind.
func (s *snapshotter) createSnapshot(ctx context.Context, kind snapshots.Kind, key, parent string, opts []snapshots.Opt) (sn storage.Snapshot, err error) {
	err = s.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		td, err := os.MkdirTemp(filepath.Join(s.root, "snapshots"), tempPrefix)
		if err != nil {
			return fmt.Errorf("failed to create temp dir: %w", err)
		}
		defer func() {
			if err != nil && td != "" {
				if rerr := os.RemoveAll(td); rerr != nil {
					log.G(ctx).WithError(rerr).WithField("path", td).Warn("failed to remove temp dir")
				}
			}
		}()
		if err := s.stamp(td); err != nil {
			return fmt.Errorf("failed to stamp temp dir: %w", err)
		}
		if err := os.Mkdir(filepath.Join(td, "fs"), 0o755); err != nil {
			return err
		}
		if kind == snapshots.KindActive {
			if err := os.Mkdir(filepath.Join(td, "work"), 0o711); err != nil {
				return err
			}
		}
		sn, err = storage.CreateSnapshot(ctx, kind, key, parent, opts...)
		if err != nil {
			return fmt.Errorf("failed to create snapshot: %w", err)
		}
		path := s.snapshotDir(sn.ID)
		if err := os.Rename(td, path); err != nil {
			// A crash between a rename and its transaction's commit leaves
			// a directory under an id the metadata never recorded, and the
			// rolled-back id sequence hands that id out again. Inside this
			// write transaction the id is provably unused by this
			// database: clear the stale directory (never through a mount)
			// and retry once. A directory another database made (this
			// one is new and ids start again at 1) may be a running
			// container's: it is moved aside instead.
			if !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
				return fmt.Errorf("failed to rename: %w", err)
			}
			if !s.owns(sn.ID) {
				if merr := s.moveAside(ctx, sn.ID); merr != nil {
					return fmt.Errorf("failed to rename: %w (directory of another database in the way: %v)", err, merr)
				}
			} else if rerr := s.removeDir(ctx, sn.ID); rerr != nil {
				return fmt.Errorf("failed to rename: %w (stale directory: %v)", err, rerr)
			} else {
				log.G(ctx).WithField("path", path).Warn("removed a stale snapshot directory left by a crash")
			}
			if err := os.Rename(td, path); err != nil {
				return fmt.Errorf("failed to rename: %w", err)
			}
		}
		td = ""
		return nil
	})
	if err == nil && len(sn.ParentIDs) > 0 && kind == snapshots.KindActive {
		// overlayfs shows the merged root with the upper dir's owner and
		// mode: give it the parent's. Done outside the transaction because
		// the parent may be a remote mount that is slow to answer.
		s.inheritRootAttrs(ctx, sn)
	}
	return sn, err
}
