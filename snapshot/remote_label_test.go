package snapshot

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
)

// TestMalformedRemoteLabelAtRestore: a committed remote snapshot whose
// label does not parse (written by a damaged or foreign database) is kept
// but unavailable: its children's Mounts answer ErrUnavailable naming the
// label instead of stacking on an empty directory.
func TestMalformedRemoteLabelAtRestore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lfs := newFakeLayerFS(layerA, layerB)
	sn := newTestSnapshotter(t, root, lfs)
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := prepareLayer(t, sn, "chain-ab", "chain-a", layerB); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "container", "chain-ab"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.View(ctx, "view", "chain-a"); err != nil {
		t.Fatal(err)
	}
	// Damage chain-a's label behind the snapshotter's back.
	const bad = "sha256:not-a-digest"
	if err := sn.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, err := storage.UpdateInfo(ctx, snapshots.Info{Name: "chain-a", Labels: map[string]string{LabelRemote: bad}}, "labels."+LabelRemote)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}

	sn2 := newTestSnapshotter(t, root, lfs)
	for _, key := range []string{"container", "view"} {
		_, err := sn2.Mounts(ctx, key)
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), LabelRemote) || !strings.Contains(err.Error(), bad) {
			t.Fatalf("Mounts(%s) over a malformed remote label = %v, want ErrUnavailable naming the label", key, err)
		}
	}
	if _, err := sn2.Prepare(ctx, "another", "chain-a"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare on a malformed remote layer = %v, want ErrUnavailable", err)
	}
	if _, err := sn2.Stat(ctx, "chain-a"); err != nil {
		t.Fatalf("snapshot with a malformed label lost: %v", err)
	}
	// The well-formed layer above it was still restored.
	if n := lfs.mountCount(); n != 1 {
		t.Fatalf("%d layers mounted after restart, want 1", n)
	}
}
