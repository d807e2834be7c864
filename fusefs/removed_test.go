//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// TestLayerRemovedFromStore: DUCC's garbage collection removes a layer
// while it is mounted. Check reports it (FailedPrecondition, naming the
// layer), Stats marks the layer removed, and both clear when the store
// holds the layer again; a copy written anew at the same place is another
// directory than the one served, and Check asks for a new mount.
func TestLayerRemovedFromStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layerfs")
	writeFile(t, dir, "f", "x")
	m, mp, layer := mountLayer(t, dir)
	ctx := context.Background()
	removed := func() bool {
		t.Helper()
		st := statsOf(t, m)
		if len(st) != 1 {
			t.Fatalf("stats = %+v", st)
		}
		return st[0].Removed
	}
	if err := m.Check(ctx, mp); err != nil || removed() {
		t.Fatalf("before the removal: Check = %v, removed %v", err, removed())
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if !removed() {
		t.Error("Stats does not mark the removed layer")
	}
	err := m.Check(ctx, mp)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), layer.String()) {
		t.Fatalf("Check after the removal = %v, want FailedPrecondition naming %s", err, layer)
	}
	writeFile(t, dir, "f", "x")
	if err := m.Check(ctx, mp); !errdefs.IsUnavailable(err) {
		t.Fatalf("Check with a new copy in the store = %v, want Unavailable (mount again)", err)
	}
	if removed() {
		t.Error("Stats still marks the layer removed once the store holds it again")
	}
}
