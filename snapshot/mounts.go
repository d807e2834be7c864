package snapshot

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
)

// mounts returns the mounts of a snapshot: a bind mount of its own
// directory when it has no parent, a read-only bind of the parent for a
// view of a single layer, and an overlay otherwise. Remote layers it stacks
// on are checked (and revived if their mount died) first.
func (s *snapshotter) mounts(ctx context.Context, sn storage.Snapshot, kind snapshots.Kind) ([]mount.Mount, error) {
	for _, pid := range sn.ParentIDs {
		if err := s.ensureMounted(ctx, pid); err != nil {
			return nil, err
		}
	}
	if len(sn.ParentIDs) == 0 {
		ro := "rw"
		if kind == snapshots.KindView {
			ro = "ro"
		}
		return []mount.Mount{{
			Source:  s.upperPath(sn.ID),
			Type:    "bind",
			Options: []string{ro, "rbind"},
		}}, nil
	}
	if kind == snapshots.KindView && len(sn.ParentIDs) == 1 {
		return []mount.Mount{{
			Source:  s.upperPath(sn.ParentIDs[0]),
			Type:    "bind",
			Options: []string{"ro", "rbind"},
		}}, nil
	}
	var options []string
	if kind == snapshots.KindActive {
		options = append(options,
			"workdir="+s.workPath(sn.ID),
			"upperdir="+s.upperPath(sn.ID),
		)
	}
	if s.userxattr {
		options = append(options, "userxattr")
	}
	lower := make([]string, len(sn.ParentIDs))
	for i, pid := range sn.ParentIDs {
		lower[i] = s.upperPath(pid)
	}
	options = append(options, "lowerdir="+strings.Join(lower, ":"))
	return []mount.Mount{{
		Type:    "overlay",
		Source:  "overlay",
		Options: options,
	}}, nil
}

// inheritRootAttrs gives an active snapshot's upper dir the owner and mode
// of its nearest parent's root. A remote parent is stat'ed in the layer
// store (see LayerRootStater), never through its mount. A parent that does
// not answer in time is logged and skipped: the snapshot is still usable.
func (s *snapshotter) inheritRootAttrs(ctx context.Context, sn storage.Snapshot) {
	ctx, cancel := context.WithTimeout(ctx, s.config.lookupTimeout)
	defer cancel()
	pid := sn.ParentIDs[0]
	stat := func() (os.FileInfo, error) { return os.Stat(s.upperPath(pid)) }
	s.mu.Lock()
	rl := s.remote[pid]
	s.mu.Unlock()
	if rl != nil {
		stater, ok := s.config.layers.(LayerRootStater)
		if !ok || rl.broken != nil {
			return
		}
		stat = func() (os.FileInfo, error) { return stater.StatLayerRoot(ctx, rl.layer) }
	}
	err := bounded.Do(ctx, "copy the root owner and mode of "+pid, func() error {
		st, err := stat()
		if err != nil {
			return err
		}
		return copyOwnerAndMode(s.upperPath(sn.ID), st)
	})
	if err != nil {
		log.G(ctx).WithError(err).WithField("parent", pid).Warn("failed to copy the parent's root owner and mode")
	}
}

func copyOwnerAndMode(path string, st os.FileInfo) error {
	if err := os.Chmod(path, st.Mode()&os.ModePerm|st.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Lchown(path, int(sys.Uid), int(sys.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}
