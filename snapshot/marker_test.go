package snapshot

import (
	"context"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// forgedMarkers are the labels an image can put on a layer descriptor
// (containerd copies every containerd.io/snapshot/* annotation into the
// labels of Prepare and Commit) or a client can pass directly, claiming a
// snapshot is a layer of the store.
func forgedMarkers(value string) map[string]string {
	m := map[string]string{}
	for _, k := range []string{legacyLabelRemote, LabelRemote} {
		m[k] = value
	}
	return m
}

// TestCallerCannotMarkRemote: labels that mark a snapshot remote are the
// snapshotter's alone. Passed to Prepare, View or Commit they are dropped,
// so the next start mounts nothing over a pulled layer (a well-formed
// value) and does not make the chain unavailable (a malformed one).
func TestCallerCannotMarkRemote(t *testing.T) {
	for _, value := range []string{layerB.String(), "sha256:not-a-digest"} {
		t.Run(value, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			lfs := newFakeLayerFS(layerA, layerB)
			sn := newTestSnapshotter(t, root, lfs)

			// containerd's unpacker: an extraction Prepare and a Commit
			// carrying the descriptor's annotations, for a layer pulled
			// (no layer digest label: not asked of the store).
			labels := forgedMarkers(value)
			labels[LabelTarget] = "base"
			if _, err := sn.Prepare(ctx, "extract-base", "", snapshots.WithLabels(labels)); err != nil {
				t.Fatal(err)
			}
			if err := sn.Commit(ctx, "base", "extract-base", snapshots.WithLabels(labels)); err != nil {
				t.Fatal(err)
			}
			if _, err := sn.View(ctx, "view", "base", snapshots.WithLabels(forgedMarkers(value))); err != nil {
				t.Fatal(err)
			}
			if _, err := sn.Prepare(ctx, "active", "base", snapshots.WithLabels(forgedMarkers(value))); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{"base", "view", "active"} {
				info, err := sn.Stat(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				for k := range forgedMarkers(value) {
					if v, ok := info.Labels[k]; ok {
						t.Errorf("%s kept the caller's label %s=%q", key, k, v)
					}
				}
			}
			if err := sn.Close(); err != nil {
				t.Fatal(err)
			}

			sn2 := newTestSnapshotter(t, root, lfs)
			if n := lfs.mountCalls(); n != 0 {
				t.Fatalf("restart mounted %d layers over snapshots a caller labelled", n)
			}
			for _, key := range []string{"view", "active"} {
				if _, err := sn2.Mounts(ctx, key); err != nil {
					t.Fatalf("Mounts(%s) after restart = %v", key, err)
				}
			}
			if _, err := sn2.Prepare(ctx, "container", "base"); err != nil {
				t.Fatalf("Prepare on the labelled chain after restart = %v", err)
			}
		})
	}
}

// TestCallerCannotUpdateRemoteMarker: Update never adds, changes or
// removes the marker, whatever form the update takes; the rest of the
// update applies.
func TestCallerCannotUpdateRemoteMarker(t *testing.T) {
	ctx := context.Background()
	sn := newTestSnapshotter(t, t.TempDir(), newFakeLayerFS(layerA))
	if _, err := prepareLayer(t, sn, "remote", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "plain-active", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "plain", "plain-active"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		key        string
		labels     map[string]string
		fieldpaths []string
	}{
		{"add by fieldpath", "plain", forgedMarkers(layerA.String()), []string{"labels." + LabelRemote, "labels." + legacyLabelRemote, "labels.foo"}},
		{"add in full labels", "plain", forgedMarkers(layerA.String()), nil},
		{"add with labels fieldpath", "plain", forgedMarkers(layerA.String()), []string{"labels"}},
		{"change by fieldpath", "remote", forgedMarkers(layerB.String()), []string{"labels." + LabelRemote, "labels.foo"}},
		{"change in full labels", "remote", forgedMarkers(layerB.String()), nil},
		{"remove by fieldpath", "remote", map[string]string{}, []string{"labels." + LabelRemote, "labels.foo"}},
		{"remove in full labels", "remote", map[string]string{"foo": "bar"}, nil},
		{"remove with labels fieldpath", "remote", map[string]string{"foo": "bar"}, []string{"labels"}},
		{"only the marker by fieldpath", "remote", map[string]string{}, []string{"labels." + LabelRemote}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := sn.Stat(ctx, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			labels := map[string]string{"foo": "bar"}
			for k, v := range tc.labels {
				labels[k] = v
			}
			if _, err := sn.Update(ctx, snapshots.Info{Name: tc.key, Labels: labels}, tc.fieldpaths...); err != nil {
				t.Fatalf("Update = %v", err)
			}
			after, err := sn.Stat(ctx, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{LabelRemote, legacyLabelRemote} {
				was, had := before.Labels[k]
				now, has := after.Labels[k]
				if had != has || was != now {
					t.Errorf("label %s changed by Update: %q (%v) -> %q (%v)", k, was, had, now, has)
				}
			}
			if len(tc.fieldpaths) != 1 && after.Labels["foo"] != "bar" {
				t.Errorf("the rest of the update was not applied: %v", after.Labels)
			}
		})
	}
}
