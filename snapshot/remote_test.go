package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

var (
	layerA = digest.Digest("sha256:" + strings.Repeat("a", 64))
	layerB = digest.Digest("sha256:" + strings.Repeat("b", 64))
)

func newTestSnapshotter(t *testing.T, root string, lfs LayerFS, opts ...Opt) *snapshotter {
	t.Helper()
	// The chain check is off unless a test turns it on: most tests name
	// their targets freely (chain_test.go covers the check).
	opts = append([]Opt{WithLayerFS(lfs), WithLookupTimeout(200 * time.Millisecond), WithChainCheck(false)}, opts...)
	sn, err := New(context.Background(), root, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { sn.Close() })
	return sn.(*snapshotter)
}

func remoteLabels(target string, layer digest.Digest) snapshots.Opt {
	return snapshots.WithLabels(map[string]string{
		LabelTarget:      target,
		LabelLayerDigest: layer.String(),
	})
}

// prepareLayer runs the extraction Prepare containerd's unpacker issues.
func prepareLayer(t *testing.T, sn snapshots.Snapshotter, target, parent string, layer digest.Digest) ([]mount.Mount, error) {
	t.Helper()
	return sn.Prepare(context.Background(), "extract-"+target, parent, remoteLabels(target, layer))
}

func TestPrepareRemoteHit(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lfs := newFakeLayerFS(layerA)
	sn := newTestSnapshotter(t, root, lfs)

	_, err := prepareLayer(t, sn, "chain-a", "", layerA)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v, want ErrAlreadyExists", err)
	}
	info, err := sn.Stat(ctx, "chain-a")
	if err != nil {
		t.Fatalf("Stat target: %v", err)
	}
	if info.Kind != snapshots.KindCommitted || info.Labels[LabelRemote] != layerA.String() {
		t.Fatalf("target info = %+v", info)
	}
	if _, err := sn.Stat(ctx, "extract-chain-a"); !errdefs.IsNotFound(err) {
		t.Fatalf("extraction key still exists: %v", err)
	}
	u, err := sn.Usage(ctx, "chain-a")
	if err != nil || u.Size != 4096 {
		t.Fatalf("Usage = %+v, %v; want size from the layer store", u, err)
	}
	// The layer's content is at the committed snapshot's fs dir.
	id, _ := idOf(t, sn, "chain-a")
	if b, err := os.ReadFile(filepath.Join(sn.upperPath(id), fakeMarker)); err != nil || string(b) != layerA.String() {
		t.Fatalf("layer not at the snapshot mount: %q, %v", b, err)
	}

	// A second Prepare of the same target answers AlreadyExists at once.
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second Prepare = %v", err)
	}
	if n := lfs.mountCalls(); n != 1 {
		t.Fatalf("%d mounts, want 1", n)
	}

	// A container's snapshot on top stacks on the remote layer.
	ms, err := sn.Prepare(ctx, "container", "chain-a")
	if err != nil {
		t.Fatalf("Prepare container: %v", err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" || !hasOption(ms[0], "lowerdir="+sn.upperPath(id)) {
		t.Fatalf("container mounts = %+v", ms)
	}
	ms, err = sn.View(ctx, "view", "chain-a")
	if err != nil || len(ms) != 1 || ms[0].Type != "bind" || ms[0].Source != sn.upperPath(id) || !hasOption(ms[0], "ro") {
		t.Fatalf("View = %+v, %v", ms, err)
	}
}

func hasOption(m mount.Mount, opt string) bool {
	for _, o := range m.Options {
		if o == opt {
			return true
		}
	}
	return false
}

func idOf(t *testing.T, sn *snapshotter, key string) (string, snapshots.Info) {
	t.Helper()
	var (
		id   string
		info snapshots.Info
	)
	ids := map[string]string{}
	if err := sn.Walk(context.Background(), func(ctx context.Context, i snapshots.Info) error {
		if i.Name == key {
			info = i
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(sn.root, "snapshots"))
	for _, e := range entries {
		ids[e.Name()] = ""
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	for rid, rl := range sn.remote {
		if rl.layer.String() == info.Labels[LabelRemote] {
			if b, err := os.ReadFile(filepath.Join(sn.upperPath(rid), fakeMarker)); err == nil && string(b) == rl.layer.String() {
				id = rid
			}
		}
	}
	if id == "" {
		t.Fatalf("no remote snapshot directory for %s", key)
	}
	return id, info
}

func TestPrepareFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*fakeLayerFS)
		layer digest.Digest
	}{
		{"absent", func(*fakeLayerFS) {}, layerB},
		{"store unavailable", func(f *fakeLayerFS) { f.failAll = true }, layerA},
		{"lookup hangs past the timeout", func(f *fakeLayerFS) { f.hang = true }, layerA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			lfs := newFakeLayerFS(layerA)
			tc.setup(lfs)
			sn := newTestSnapshotter(t, t.TempDir(), lfs)
			ms, err := prepareLayer(t, sn, "chain", "", tc.layer)
			if err != nil {
				t.Fatalf("Prepare = %v, want writable mounts", err)
			}
			if len(ms) != 1 || ms[0].Type != "bind" || !hasOption(ms[0], "rw") {
				t.Fatalf("mounts = %+v", ms)
			}
			if _, err := sn.Stat(ctx, "chain"); !errdefs.IsNotFound(err) {
				t.Fatalf("target exists after a fallback: %v", err)
			}
			info, err := sn.Stat(ctx, "extract-chain")
			if err != nil || info.Kind != snapshots.KindActive {
				t.Fatalf("extraction snapshot = %+v, %v", info, err)
			}
			// containerd then applies the layer and commits.
			if err := sn.Commit(ctx, "chain", "extract-chain"); err != nil {
				t.Fatalf("Commit: %v", err)
			}
			if lfs.mountCount() != 0 {
				t.Fatalf("a mount was left behind")
			}
		})
	}
}

func TestMalformedDigestNeverLooksUp(t *testing.T) {
	for _, tc := range malformedDigests {
		t.Run(tc.name, func(t *testing.T) {
			lfs := newFakeLayerFS(layerA)
			sn := newTestSnapshotter(t, t.TempDir(), lfs)
			ms, err := sn.Prepare(context.Background(), "extract", "", snapshots.WithLabels(map[string]string{
				LabelTarget:      "chain",
				LabelLayerDigest: tc.value,
			}))
			if err != nil || len(ms) != 1 {
				t.Fatalf("Prepare = %+v, %v; want a fallback", ms, err)
			}
			if n := lfs.mountCalls(); n != 0 {
				t.Fatalf("malformed digest %q reached the LayerFS", tc.value)
			}
		})
	}
}

func TestSameLayerManyTimes(t *testing.T) {
	ctx := context.Background()
	lfs := newFakeLayerFS(layerA)
	sn := newTestSnapshotter(t, t.TempDir(), lfs)
	// Two namespaces (containerd gives them distinct keys), and a layer
	// repeated inside one image (the same digest at two chain positions).
	if _, err := prepareLayer(t, sn, "ns1/chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := prepareLayer(t, sn, "ns2/chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := prepareLayer(t, sn, "ns1/chain-aa", "ns1/chain-a", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if n := lfs.mountCount(); n != 3 {
		t.Fatalf("%d mounts of the same layer, want 3", n)
	}
	// Remove and pull again: served from the store again.
	if err := sn.Remove(ctx, "ns2/chain-a"); err != nil {
		t.Fatal(err)
	}
	if n := lfs.mountCount(); n != 2 {
		t.Fatalf("%d mounts after Remove, want 2", n)
	}
	if _, err := prepareLayer(t, sn, "ns2/chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("re-pull after removal: %v", err)
	}
	if n := lfs.mountCount(); n != 3 {
		t.Fatalf("%d mounts after re-pull, want 3", n)
	}
}

func TestRemoveUnmountsAndDeletes(t *testing.T) {
	ctx := context.Background()
	lfs := newFakeLayerFS(layerA)
	sn := newTestSnapshotter(t, t.TempDir(), lfs)
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	id, _ := idOf(t, sn, "chain-a")
	if _, err := sn.Prepare(ctx, "child", "chain-a"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "chain-a"); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("Remove of a parent with children = %v, want ErrFailedPrecondition", err)
	}
	if err := sn.Remove(ctx, "child"); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "chain-a"); err != nil {
		t.Fatal(err)
	}
	if lfs.mountCount() != 0 {
		t.Fatal("layer still mounted after Remove")
	}
	if _, err := os.Stat(sn.snapshotDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("snapshot dir left: %v", err)
	}
}

// servedChainA returns a snapshotter over a fake store holding layerA,
// served as snapshot chain-a, and chain-a's id.
func servedChainA(t *testing.T) (*snapshotter, *fakeLayerFS, string) {
	t.Helper()
	lfs := newFakeLayerFS(layerA)
	sn := newTestSnapshotter(t, t.TempDir(), lfs)
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	id, _ := idOf(t, sn, "chain-a")
	return sn, lfs, id
}

func TestDeadMountIsRevived(t *testing.T) {
	ctx := context.Background()
	sn, lfs, id := servedChainA(t)
	lfs.mu.Lock()
	lfs.dead[sn.upperPath(id)] = true
	lfs.mu.Unlock()
	if _, err := sn.Prepare(ctx, "c1", "chain-a"); err != nil {
		t.Fatalf("Prepare over a dead layer: %v", err)
	}
	if n := lfs.mountCalls(); n != 2 {
		t.Fatalf("%d mount calls, want a re-mount", n)
	}
	if err := lfs.Check(ctx, sn.upperPath(id)); err != nil {
		t.Fatalf("layer not revived: %v", err)
	}
	// If the store is gone, stacking answers ErrUnavailable and the
	// snapshot stays.
	lfs.mu.Lock()
	lfs.dead[sn.upperPath(id)] = true
	lfs.failAll = true
	lfs.mu.Unlock()
	if _, err := sn.Prepare(ctx, "c2", "chain-a"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Prepare over an unrecoverable layer = %v, want ErrUnavailable", err)
	}
	if _, err := sn.Stat(ctx, "chain-a"); err != nil {
		t.Fatalf("remote snapshot lost: %v", err)
	}
}

// TestRemovedLayerFailsNewSnapshots: Check reports that the store no
// longer holds a mounted layer. Snapshots stacked on it fail with an error
// that names the layer and the fix; the mount is left for the containers
// that hold it (no unmount, no mount again); all is well once the store
// holds the layer again.
func TestRemovedLayerFailsNewSnapshots(t *testing.T) {
	ctx := context.Background()
	sn, lfs, id := servedChainA(t)
	lfs.mu.Lock()
	lfs.removed[sn.upperPath(id)] = true
	lfs.calls = nil
	lfs.mu.Unlock()
	for _, key := range []string{"c1", "c2"} {
		_, err := sn.Prepare(ctx, key, "chain-a")
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), layerA.String()) || !strings.Contains(err.Error(), "pull it again") {
			t.Fatalf("Prepare %s over a removed layer = %v, want ErrUnavailable naming %s and the fix", key, err, layerA)
		}
	}
	if _, err := sn.View(ctx, "v1", "chain-a"); !errdefs.IsUnavailable(err) {
		t.Fatalf("View over a removed layer = %v", err)
	}
	lfs.mu.Lock()
	for _, c := range lfs.calls {
		if c != "check" {
			t.Errorf("call %q on a removed layer: its mount must stay as it is", c)
		}
	}
	lfs.removed[sn.upperPath(id)] = false
	lfs.mu.Unlock()
	if _, err := sn.Prepare(ctx, "c3", "chain-a"); err != nil {
		t.Fatalf("Prepare once the layer is back: %v", err)
	}
}

func TestRestartRestoresMounts(t *testing.T) {
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
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if n := lfs.mountCount(); n != 0 {
		t.Fatalf("Close left %d mounts", n)
	}

	// Next start: both layers are mounted again, everything is kept.
	sn2 := newTestSnapshotter(t, root, lfs)
	if n := lfs.mountCount(); n != 2 {
		t.Fatalf("restored %d mounts, want 2", n)
	}
	for _, key := range []string{"chain-a", "chain-ab", "container"} {
		if _, err := sn2.Stat(ctx, key); err != nil {
			t.Fatalf("%s lost across restart: %v", key, err)
		}
	}
	if _, err := sn2.Mounts(ctx, "container"); err != nil {
		t.Fatalf("Mounts after restart: %v", err)
	}
	if err := sn2.Close(); err != nil {
		t.Fatal(err)
	}

	// A start where the store lost layer B: the daemon starts, the snapshot
	// is kept and reported unavailable, never deleted.
	lfs.mu.Lock()
	delete(lfs.present, layerB)
	lfs.mu.Unlock()
	sn3 := newTestSnapshotter(t, root, lfs)
	if _, err := sn3.Stat(ctx, "chain-ab"); err != nil {
		t.Fatalf("unrestorable snapshot deleted: %v", err)
	}
	if _, err := sn3.Mounts(ctx, "container"); !errdefs.IsUnavailable(err) {
		t.Fatalf("Mounts over an unrestorable layer = %v, want ErrUnavailable", err)
	}
	// The layer comes back: the next use revives it.
	lfs.mu.Lock()
	lfs.present[layerB] = 1
	lfs.mu.Unlock()
	if _, err := sn3.Mounts(ctx, "container"); err != nil {
		t.Fatalf("Mounts after the layer came back: %v", err)
	}
}

func TestCleanupRemovesOrphans(t *testing.T) {
	ctx := context.Background()
	lfs := newFakeLayerFS(layerA)
	sn := newTestSnapshotter(t, t.TempDir(), lfs)
	orphan := removeFromMetadataOnly(t, sn, "orphan")
	if _, err := sn.Prepare(ctx, "kept", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan left: %v", err)
	}
	if _, err := sn.Mounts(ctx, "kept"); err != nil {
		t.Fatalf("live snapshot lost: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(sn.root, "snapshots"))
	if len(entries) != 1 {
		t.Fatalf("%d snapshot dirs, want 1", len(entries))
	}
}

func TestMalformedRequests(t *testing.T) {
	ctx := context.Background()
	sn := newTestSnapshotter(t, t.TempDir(), newFakeLayerFS())
	if _, err := sn.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "base-c", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "active", "base-c"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		is   func(error) bool
	}{
		{"stat unknown key", func() error { _, err := sn.Stat(ctx, "nope"); return err }, errdefs.IsNotFound},
		{"mounts unknown key", func() error { _, err := sn.Mounts(ctx, "nope"); return err }, errdefs.IsNotFound},
		{"prepare missing parent", func() error { _, err := sn.Prepare(ctx, "x", "nope"); return err }, errdefs.IsNotFound},
		{"prepare duplicate key", func() error { _, err := sn.Prepare(ctx, "active", "base-c"); return err }, errdefs.IsAlreadyExists},
		{"prepare on an active parent", func() error { _, err := sn.Prepare(ctx, "y", "active"); return err }, errdefs.IsInvalidArgument},
		{"remove a parent with children", func() error { return sn.Remove(ctx, "base-c") }, errdefs.IsFailedPrecondition},
		{"remove unknown key", func() error { return sn.Remove(ctx, "nope") }, errdefs.IsNotFound},
		{"commit a committed snapshot", func() error { return sn.Commit(ctx, "z", "base-c") }, errdefs.IsFailedPrecondition},
		{"commit unknown key", func() error { return sn.Commit(ctx, "z", "nope") }, errdefs.IsNotFound},
		{"commit onto an existing name", func() error { return sn.Commit(ctx, "base-c", "active") }, errdefs.IsAlreadyExists},
		{"usage unknown key", func() error { _, err := sn.Usage(ctx, "nope"); return err }, errdefs.IsNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !tc.is(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

// TestStaleDirectoryFromACrash: a crash after a snapshot dir was renamed
// into place but before its transaction committed leaves a directory under
// an id the metadata hands out again. The next Prepare must succeed.
func TestStaleDirectoryFromACrash(t *testing.T) {
	ctx := context.Background()
	sn := newTestSnapshotter(t, t.TempDir(), newFakeLayerFS())
	if _, err := sn.Prepare(ctx, "a", ""); err != nil {
		t.Fatal(err)
	}
	// The crashed creation had stamped its directory as this database's.
	stale := sn.snapshotDir("2")
	if err := os.MkdirAll(filepath.Join(stale, "fs", "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sn.stamp(stale); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "b", ""); err != nil {
		t.Fatalf("Prepare over a stale directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stale, "fs", "junk")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale content kept: %v", err)
	}
}

// TestUpperDirTakesTheRemoteRootMode: a container's upper dir gets the mode
// of the remote layer's root, taken from the store, not through the mount.
func TestUpperDirTakesTheRemoteRootMode(t *testing.T) {
	ctx := context.Background()
	sn := newTestSnapshotter(t, t.TempDir(), newFakeLayerFS(layerA))
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ms, err := sn.Prepare(ctx, "container", "chain-a")
	if err != nil {
		t.Fatal(err)
	}
	var upper string
	for _, o := range ms[0].Options {
		if v, ok := strings.CutPrefix(o, "upperdir="); ok {
			upper = v
		}
	}
	st, err := os.Stat(upper)
	if err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("upper dir mode = %v, %v; want 0750 from the layer root", st.Mode(), err)
	}
}
