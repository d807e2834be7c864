package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// chainOf is the chain ID of diff IDs stacked in order.
func chainOf(diffIDs ...digest.Digest) string {
	return identity.ChainID(diffIDs).String()
}

// unpackLabels are the labels containerd's unpacker passes to the
// extraction Prepare of a layer whose config claims diffID, on a parent
// chain ("" for the first layer), with the layer digest from the manifest.
func unpackLabels(parentChain string, diffID, layer digest.Digest) map[string]string {
	target := diffID.String()
	if parentChain != "" {
		target = chainOf(digest.Digest(parentChain), diffID)
	}
	labels := map[string]string{
		LabelTarget:      target,
		LabelLayerDigest: layer.String(),
		LabelDiffID:      diffID.String(),
	}
	if parentChain != "" {
		labels[LabelParentChain] = parentChain
	}
	return labels
}

// unpack runs the extraction Prepare of unpackLabels.
func unpack(sn snapshots.Snapshotter, parentChain string, diffID, layer digest.Digest) (string, error) {
	labels := unpackLabels(parentChain, diffID, layer)
	_, err := sn.Prepare(context.Background(), "extract-"+labels[LabelTarget], parentChain, snapshots.WithLabels(labels))
	return labels[LabelTarget], err
}

// recorder collects the observer's events.
type recorder struct {
	mu     sync.Mutex
	events []LayerEvent
}

func (r *recorder) observe(_ context.Context, ev LayerEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder) last(t *testing.T) LayerEvent {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		t.Fatal("no layer event")
	}
	return r.events[len(r.events)-1]
}

func newCheckedSnapshotter(t *testing.T, root string, lfs LayerFS, rec *recorder) *snapshotter {
	t.Helper()
	return newTestSnapshotter(t, root, lfs, WithChainCheck(true), WithLayerObserver(rec.observe))
}

// TestChainCheckServesGenuineChain: layers whose recorded diff IDs make the
// chain containerd asks for are served, on top of each other.
func TestChainCheckServesGenuineChain(t *testing.T) {
	rec := &recorder{}
	sn := newCheckedSnapshotter(t, t.TempDir(), newFakeLayerFS(layerA, layerB), rec)
	base, err := unpack(sn, "", diffOf(layerA), layerA)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of the base layer = %v, want ErrAlreadyExists", err)
	}
	top, err := unpack(sn, base, diffOf(layerB), layerB)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of the second layer = %v, want ErrAlreadyExists", err)
	}
	info, err := sn.Stat(context.Background(), top)
	if err != nil || info.Labels[LabelRemote] != layerB.String() || info.Parent != base {
		t.Fatalf("Stat(%s) = %+v, %v", top, info, err)
	}
	if ev := rec.last(t); !ev.Served {
		t.Fatalf("event %+v, want served", ev)
	}
}

// TestChainCheckOnPulledParent: a layer is served on top of one containerd
// pulled, whose chain id is the one containerd's unpacker recorded at
// Commit.
func TestChainCheckOnPulledParent(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	lfs := newFakeLayerFS(layerB)
	sn := newCheckedSnapshotter(t, t.TempDir(), lfs, rec)
	pulled := digest.FromString("a layer containerd pulled")
	labels := unpackLabels("", pulled, layerA) // layerA is not in the store
	if _, err := sn.Prepare(ctx, "extract-base", "", snapshots.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	// containerd's metadata store names the backend's snapshots itself.
	const name = "default/1/" + "sha256:base"
	if err := sn.Commit(ctx, name, "extract-base", snapshots.WithLabels(labels)); err != nil {
		t.Fatal(err)
	}
	l := unpackLabels(pulled.String(), diffOf(layerB), layerB)
	if _, err := sn.Prepare(ctx, "extract-top", name, snapshots.WithLabels(l)); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare on a pulled parent = %v, want ErrAlreadyExists", err)
	}
	// A parent that records no chain id (not an unpacked layer) cannot
	// be verified.
	if _, err := sn.Prepare(ctx, "rw", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "committed-container", "rw"); err != nil {
		t.Fatal(err)
	}
	l = unpackLabels(pulled.String(), diffOf(layerB), layerB)
	l[LabelTarget] = chainOf(digest.FromString("x"), diffOf(layerB))
	if _, err := sn.Prepare(ctx, "extract-other", "committed-container", snapshots.WithLabels(l)); err != nil {
		t.Fatalf("Prepare on a parent without a chain id = %v, want a pull", err)
	}
	if ev := rec.last(t); ev.Reason != ReasonChainMismatch {
		t.Fatalf("event %+v, want reason %s", ev, ReasonChainMismatch)
	}
}

// TestChainCheckRefusesMismatch: a layer is not committed under a chain ID
// its recorded diff ID does not make (an image whose config lies about
// its diff IDs, or labels that disagree): Prepare falls back to a pull,
// nothing is mounted and the target does not exist.
func TestChainCheckRefusesMismatch(t *testing.T) {
	popular := digest.FromString("the diff id of a popular layer")
	for _, tc := range []struct {
		name   string
		parent bool // on top of the genuine layerA
		labels func(parentChain string) map[string]string
	}{
		{"config claims another diff id", false, func(string) map[string]string {
			return unpackLabels("", popular, layerB)
		}},
		{"config claims another diff id on a parent", true, func(p string) map[string]string {
			return unpackLabels(p, popular, layerB)
		}},
		{"diff-id label disagrees", false, func(string) map[string]string {
			l := unpackLabels("", diffOf(layerB), layerB)
			l[LabelDiffID] = popular.String()
			return l
		}},
		{"parent-chain-id label disagrees", true, func(p string) map[string]string {
			l := unpackLabels(p, diffOf(layerB), layerB)
			l[LabelParentChain] = popular.String()
			return l
		}},
		{"parent-chain-id label on a base layer", false, func(string) map[string]string {
			l := unpackLabels("", diffOf(layerB), layerB)
			l[LabelParentChain] = popular.String()
			return l
		}},
		{"chain of the layer without its parent", true, func(p string) map[string]string {
			l := unpackLabels("", diffOf(layerB), layerB)
			return l
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rec := &recorder{}
			lfs := newFakeLayerFS(layerA, layerB)
			sn := newCheckedSnapshotter(t, t.TempDir(), lfs, rec)
			parent := ""
			if tc.parent {
				var err error
				if parent, err = unpack(sn, "", diffOf(layerA), layerA); !errdefs.IsAlreadyExists(err) {
					t.Fatal(err)
				}
			}
			mountsBefore := lfs.mountCalls()
			labels := tc.labels(parent)
			ms, err := sn.Prepare(ctx, "extract", parent, snapshots.WithLabels(labels))
			if err != nil || len(ms) == 0 {
				t.Fatalf("Prepare = %v, %v; want writable mounts (a pull)", ms, err)
			}
			if n := lfs.mountCalls() - mountsBefore; n != 0 {
				t.Fatalf("%d layers mounted for a chain that does not match", n)
			}
			if _, err := sn.Stat(ctx, labels[LabelTarget]); !errdefs.IsNotFound(err) {
				t.Fatalf("target committed: %v", err)
			}
			if ev := rec.last(t); ev.Served || ev.Reason != ReasonChainMismatch || ev.Layer != layerB {
				t.Fatalf("event %+v, want reason %s", ev, ReasonChainMismatch)
			}
		})
	}
}

// TestChainCheckWithoutDiffID: a layer the store holds without a usable
// diff ID (layers.json missing or broken) is pulled, for its own reason; a
// layer it does not hold still falls back as not in the repository.
func TestChainCheckWithoutDiffID(t *testing.T) {
	rec := &recorder{}
	lfs := newFakeLayerFS(layerA)
	lfs.setDiffID(layerA, "")
	sn := newCheckedSnapshotter(t, t.TempDir(), lfs, rec)
	if _, err := unpack(sn, "", diffOf(layerA), layerA); err != nil {
		t.Fatalf("Prepare = %v, want a pull", err)
	}
	if n := lfs.mountCalls(); n != 0 {
		t.Fatalf("%d layers mounted without a diff id", n)
	}
	if ev := rec.last(t); ev.Served || ev.Reason != ReasonNoDiffID {
		t.Fatalf("event %+v, want reason %s", ev, ReasonNoDiffID)
	}
	if _, err := unpack(sn, "", diffOf(layerB), layerB); err != nil {
		t.Fatalf("Prepare = %v, want a pull", err)
	}
	if ev := rec.last(t); ev.Reason != ReasonNotInRepository {
		t.Fatalf("event %+v, want reason %s", ev, ReasonNotInRepository)
	}
}

// TestChainCheckRefused: a layer the store refuses to serve (its files
// owned by the CVMFS client) is pulled, for that reason, before its chain
// is checked or anything mounted.
func TestChainCheckRefused(t *testing.T) {
	rec := &recorder{}
	lfs := newFakeLayerFS(layerA)
	lfs.refused = true
	sn := newCheckedSnapshotter(t, t.TempDir(), lfs, rec)
	if _, err := unpack(sn, "", diffOf(layerA), layerA); err != nil {
		t.Fatalf("Prepare = %v, want a pull", err)
	}
	if n := lfs.mountCalls(); n != 0 {
		t.Fatalf("%d layers mounted", n)
	}
	if ev := rec.last(t); ev.Served || ev.Reason != ReasonRefused {
		t.Fatalf("event %+v, want reason %s", ev, ReasonRefused)
	}
}

// TestChainCheckOff: WithChainCheck(false) serves a layer under any chain
// ID, as before the check existed.
func TestChainCheckOff(t *testing.T) {
	lfs := newFakeLayerFS(layerB)
	sn := newTestSnapshotter(t, t.TempDir(), lfs, WithChainCheck(false))
	if _, err := unpack(sn, "", digest.FromString("anything"), layerB); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v, want ErrAlreadyExists", err)
	}
}

// TestChainCheckAtRestore: a remote snapshot whose chain no longer matches
// the diff ID the store records (committed unchecked, or the store's
// record changed) is not mounted at start; it and its children answer
// ErrUnavailable. A matching one is restored.
func TestChainCheckAtRestore(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lfs := newFakeLayerFS(layerA, layerB)
	// An earlier run without the check committed layerB under a lie.
	sn := newTestSnapshotter(t, root, lfs, WithChainCheck(false))
	good, err := unpack(sn, "", diffOf(layerA), layerA)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	bad, err := unpack(sn, "", digest.FromString("popular"), layerB)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, parent string }{{"on-good", good}, {"on-bad", bad}} {
		if _, err := sn.Prepare(ctx, c.key, c.parent); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}

	sn2 := newCheckedSnapshotter(t, root, lfs, &recorder{})
	if _, err := sn2.Mounts(ctx, "on-good"); err != nil {
		t.Fatalf("Mounts on the genuine layer = %v", err)
	}
	if _, err := sn2.Mounts(ctx, "on-bad"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Mounts on the lying layer = %v, want ErrUnavailable", err)
	}
	if _, err := sn2.Prepare(ctx, "another", bad); !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare on the lying layer = %v, want ErrUnavailable", err)
	}
	if n := lfs.mountCount(); n != 1 {
		t.Fatalf("%d layers mounted after restart, want the genuine one", n)
	}
	// Checked again on each use: once the store records a diff id that
	// makes the chain, the layer is mounted.
	lfs.setDiffID(layerB, digest.FromString("popular"))
	if _, err := sn2.Mounts(ctx, "on-bad"); err != nil {
		t.Fatalf("Mounts once the chain checks out = %v", err)
	}
	if n := lfs.mountCount(); n != 2 {
		t.Fatalf("%d layers mounted, want both", n)
	}
}

// asLegacy rewrites the remote snapshot key as an earlier version stored
// it: the marker under containerd.io/snapshot/remote.
func asLegacy(t *testing.T, sn *snapshotter, key, value string) {
	t.Helper()
	err := sn.ms.WithTransaction(context.Background(), true, func(ctx context.Context) error {
		_, info, _, err := storage.GetInfo(ctx, key)
		if err != nil {
			return err
		}
		delete(info.Labels, LabelRemote)
		info.Labels[legacyLabelRemote] = value
		_, err = storage.UpdateInfo(ctx, info, "labels")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestMigrateLegacyMarker: snapshots an earlier version marked remote with
// containerd.io/snapshot/remote keep being restored as remote if their
// chain checks out, now under LabelRemote. A snapshot whose chain does not
// check out is not mounted: pulled content under the label (an image's
// annotation committed on a real chain) becomes an ordinary snapshot
// again; an empty directory (a layer served under a lie) is unavailable.
func TestMigrateLegacyMarker(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lfs := newFakeLayerFS(layerA, layerB)
	sn := newTestSnapshotter(t, root, lfs, WithChainCheck(false))
	genuine, err := unpack(sn, "", diffOf(layerA), layerA)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	lying, err := unpack(sn, "", digest.FromString("popular"), layerB)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// A pulled layer containerd committed with an image's annotation.
	pulled := digest.FromString("pulled").String()
	if _, err := sn.Prepare(ctx, "extract-pulled", ""); err != nil {
		t.Fatal(err)
	}
	id, _ := activeID(t, sn, "extract-pulled")
	if err := os.WriteFile(filepath.Join(sn.upperPath(id), "pulled-file"), []byte("genuine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, pulled, "extract-pulled"); err != nil {
		t.Fatal(err)
	}
	asLegacy(t, sn, genuine, layerA.String())
	asLegacy(t, sn, lying, layerB.String())
	// Written behind the snapshotter's back, as earlier versions kept it.
	err = sn.ms.WithTransaction(ctx, true, func(ctx context.Context) error {
		_, err := storage.UpdateInfo(ctx, snapshots.Info{Name: pulled, Labels: map[string]string{legacyLabelRemote: layerB.String()}}, "labels")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ key, parent string }{{"on-genuine", genuine}, {"on-lying", lying}, {"on-pulled", pulled}} {
		if _, err := sn.Prepare(ctx, c.key, c.parent); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if n := lfs.mountCount(); n != 0 {
		t.Fatalf("%d layers still mounted after Close", n)
	}

	sn2 := newCheckedSnapshotter(t, root, lfs, &recorder{})
	info, err := sn2.Stat(ctx, genuine)
	if err != nil || info.Labels[LabelRemote] != layerA.String() {
		t.Fatalf("genuine legacy snapshot not migrated: %+v, %v", info, err)
	}
	if _, ok := info.Labels[legacyLabelRemote]; ok {
		t.Fatalf("legacy label kept after migration: %v", info.Labels)
	}
	if _, err := sn2.Mounts(ctx, "on-genuine"); err != nil {
		t.Fatalf("Mounts on the migrated layer = %v", err)
	}
	if _, err := sn2.Mounts(ctx, "on-lying"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Mounts on a legacy layer with a lying chain = %v, want ErrUnavailable", err)
	}
	info, err = sn2.Stat(ctx, pulled)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{LabelRemote, legacyLabelRemote} {
		if v, ok := info.Labels[k]; ok {
			t.Fatalf("pulled snapshot keeps %s=%q", k, v)
		}
	}
	if _, err := sn2.Mounts(ctx, "on-pulled"); err != nil {
		t.Fatalf("Mounts on the pulled layer = %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(sn2.upperPath(id), "pulled-file")); err != nil || string(b) != "genuine" {
		t.Fatalf("pulled content = %q, %v", b, err)
	}
	if n := lfs.mountCount(); n != 1 {
		t.Fatalf("%d layers mounted after restart, want only the genuine one", n)
	}
}

// activeID returns the storage id of the active snapshot key.
func activeID(t *testing.T, sn *snapshotter, key string) (string, snapshots.Info) {
	t.Helper()
	var (
		id   string
		info snapshots.Info
	)
	if err := sn.ms.WithTransaction(context.Background(), false, func(ctx context.Context) (err error) {
		id, info, _, err = storage.GetInfo(ctx, key)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return id, info
}
