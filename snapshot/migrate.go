package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"

	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// Earlier versions marked a remote snapshot with legacyLabelRemote, a
// label any image could set through its layer annotations. Those markers
// are moved to LabelRemote at start, but only for snapshots whose chain
// checks out (or all of them with the check off): a marker on a snapshot
// whose chain does not is an image's forgery, or a layer served under a
// chain ID it does not make.

// legacyFailure is a legacy remote snapshot whose chain did not check out.
type legacyFailure struct {
	entry restoreEntry
	err   error
}

// migrateLegacy moves the marker of each legacy snapshot whose chain
// checks out to LabelRemote and returns them, checked, for restore; the
// others are returned as failures, their labels unchanged.
func (s *snapshotter) migrateLegacy(ctx context.Context, legacy []restoreEntry) (migrated []restoreEntry, failed []legacyFailure) {
	for _, e := range legacy {
		value := e.info.Labels[legacyLabelRemote]
		if s.config.chainCheck {
			err := e.parentErr
			if err == nil {
				if layer, perr := layerdigest.Parse(value); perr != nil {
					err = mismatch("malformed label %s=%q: %v", legacyLabelRemote, value, perr)
				} else {
					err = s.checkChain(ctx, layer, e.info.Name, e.parent, e.info.Labels)
				}
			}
			if err != nil {
				failed = append(failed, legacyFailure{entry: e, err: err})
				continue
			}
			e.checked = true
		}
		labels := maps.Clone(e.info.Labels)
		delete(labels, legacyLabelRemote)
		labels[LabelRemote] = value
		if err := s.setLabels(ctx, e.info.Name, labels); err != nil {
			// Served this run all the same; migrated at the next start.
			log.G(ctx).WithError(err).WithField("key", e.info.Name).Warn("failed to migrate the remote marker of a snapshot")
		} else {
			log.G(ctx).WithField("key", e.info.Name).WithField("layer", value).Info("migrated the remote marker of a snapshot committed by an earlier version")
		}
		e.info.Labels = labels
		migrated = append(migrated, e)
	}
	return migrated, failed
}

// settleLegacy decides what a legacy remote snapshot whose chain did not
// check out is, once nothing of ours is mounted on it (unmountLeftovers).
// Content in its directory was pulled and applied by containerd, which
// verified it: the marker was an image's forgery, so it is dropped and the
// snapshot is an ordinary one again. An empty directory was a layer served
// under a chain it does not make (or one the store can no longer vouch
// for): it is kept, unavailable, with its marker, and checked again at the
// next start.
func (s *snapshotter) settleLegacy(ctx context.Context, e restoreEntry, cause error) {
	logger := log.G(ctx).WithField("key", e.info.Name).WithField("layer", e.info.Labels[legacyLabelRemote]).WithError(cause)
	fsDir := s.upperPath(e.id)
	mounted, err := isMounted(fsDir)
	empty := false
	if err == nil && !mounted {
		empty, err = isEmptyDir(fsDir)
	}
	if err == nil && !mounted && !empty {
		labels := maps.Clone(e.info.Labels)
		delete(labels, legacyLabelRemote)
		if err = s.setLabels(ctx, e.info.Name, labels); err == nil {
			logger.Warn("dropped a remote marker an image set on a pulled layer; the snapshot keeps its pulled content")
			return
		}
	}
	s.mu.Lock()
	s.remote[e.id] = &remoteLayer{broken: fmt.Errorf("remote snapshot committed by an earlier version does not check out: %v", cause)}
	s.mu.Unlock()
	if err != nil {
		logger = logger.WithField("inspect-error", err.Error())
	}
	logger.Error("remote snapshot committed by an earlier version does not check out; it and its children are unavailable: remove the images using it and pull them again")
}

// setLabels replaces the labels of snapshot key.
func (s *snapshotter) setLabels(ctx context.Context, key string, labels map[string]string) error {
	return s.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, info, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return err
		}
		info.Labels = labels
		_, err = storage.UpdateInfo(ctx, info, "labels")
		return err
	})
}

// isEmptyDir reports whether dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}
