//go:build linux

package snapshot

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/testsuite"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/bindmount"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestConformance runs containerd's snapshotter test suite against ours.
// The name "overlayfs" opts into the suite's known overlayfs exceptions.
func TestConformance(t *testing.T) {
	testutil.RequiresRoot(t)
	t.Run("plain", func(t *testing.T) {
		testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			sn, err := New(ctx, root)
			if err != nil {
				return nil, nil, err
			}
			return sn, sn.Close, nil
		})
	})
	// Again with the remote path on, over an empty layer store: every
	// method must behave the same when layers fall back.
	t.Run("with-layer-store", func(t *testing.T) {
		testsuite.SnapshotterSuite(t, "overlayfs", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
			sn, err := New(ctx, root, WithLayerFS(bindmount.New(ducc.New(t.TempDir()))))
			if err != nil {
				return nil, nil, err
			}
			return sn, sn.Close, nil
		})
	})
}
