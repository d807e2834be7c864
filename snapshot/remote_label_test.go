package snapshot

import (
	"context"
	"maps"
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

// TestUpdateKeepsRemoteLabel: Update may change any label but
// containerd.io/snapshot/remote, in either the fieldpath or the
// full-labels form.
func TestUpdateKeepsRemoteLabel(t *testing.T) {
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
	remoteInfo, err := sn.Stat(ctx, "remote")
	if err != nil {
		t.Fatal(err)
	}
	with := func(labels map[string]string, k, v string) map[string]string {
		out := maps.Clone(labels)
		out[k] = v
		return out
	}
	without := func(labels map[string]string, k string) map[string]string {
		out := maps.Clone(labels)
		delete(out, k)
		return out
	}
	fp := "labels." + LabelRemote
	for _, tc := range []struct {
		name       string
		key        string
		labels     map[string]string
		fieldpaths []string
		refused    bool
	}{
		{"add by fieldpath", "plain", map[string]string{LabelRemote: layerA.String()}, []string{fp}, true},
		{"add empty by fieldpath", "plain", nil, []string{fp}, true},
		{"add in full labels", "plain", map[string]string{LabelRemote: layerA.String()}, nil, true},
		{"add with labels fieldpath", "plain", map[string]string{LabelRemote: layerA.String()}, []string{"labels"}, true},
		{"change by fieldpath", "remote", map[string]string{LabelRemote: layerB.String()}, []string{fp}, true},
		{"change in full labels", "remote", with(remoteInfo.Labels, LabelRemote, layerB.String()), nil, true},
		{"remove by fieldpath", "remote", map[string]string{}, []string{fp}, true},
		{"remove in full labels", "remote", without(remoteInfo.Labels, LabelRemote), nil, true},
		{"remove with labels fieldpath", "remote", without(remoteInfo.Labels, LabelRemote), []string{"labels"}, true},
		{"other label by fieldpath", "remote", map[string]string{"foo": "bar"}, []string{"labels.foo"}, false},
		{"full labels keeping it", "remote", with(remoteInfo.Labels, "foo", "baz"), nil, false},
		{"same value by fieldpath", "remote", map[string]string{LabelRemote: layerA.String()}, []string{fp}, false},
		{"other label on a plain snapshot", "plain", map[string]string{"foo": "bar"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := sn.Stat(ctx, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			_, err = sn.Update(ctx, snapshots.Info{Name: tc.key, Labels: tc.labels}, tc.fieldpaths...)
			after, serr := sn.Stat(ctx, tc.key)
			if serr != nil {
				t.Fatal(serr)
			}
			if tc.refused {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("Update = %v, want ErrInvalidArgument", err)
				}
				if len(after.Labels) != len(before.Labels) || after.Labels[LabelRemote] != before.Labels[LabelRemote] {
					t.Fatalf("refused Update changed labels: %v -> %v", before.Labels, after.Labels)
				}
				return
			}
			if err != nil {
				t.Fatalf("Update = %v", err)
			}
			if after.Labels[LabelRemote] != before.Labels[LabelRemote] {
				t.Fatalf("remote label changed: %v -> %v", before.Labels, after.Labels)
			}
			for k, v := range tc.labels {
				if after.Labels[k] != v {
					t.Fatalf("label %s = %q, want %q", k, after.Labels[k], v)
				}
			}
		})
	}
}
