package snapshot

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// TestUsageWhenLayerSizeUnknown: a layer whose size the store cannot give
// is still served, but its Usage is an ErrUnavailable error naming the
// layer, not a silent 0; once the store answers, Usage reports the size.
func TestUsageWhenLayerSizeUnknown(t *testing.T) {
	ctx := context.Background()
	lfs := newFakeLayerFS(layerA)
	lfs.sizeErr = fmt.Errorf("fake: broken layers.json: %w", errdefs.ErrNotFound)
	sn := newTestSnapshotter(t, t.TempDir(), lfs)
	if _, err := prepareLayer(t, sn, "chain-a", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v, want the layer served (ErrAlreadyExists)", err)
	}
	u, err := sn.Usage(ctx, "chain-a")
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), layerA.String()) {
		t.Fatalf("Usage = %+v, %v; want ErrUnavailable naming the layer", u, err)
	}
	// A snapshot stacked on it is unaffected.
	if _, err := sn.Prepare(ctx, "container", "chain-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Usage(ctx, "container"); err != nil {
		t.Fatalf("Usage of the container's snapshot: %v", err)
	}

	lfs.mu.Lock()
	lfs.sizeErr = nil
	lfs.mu.Unlock()
	if u, err := sn.Usage(ctx, "chain-a"); err != nil || u.Size != 4096 {
		t.Fatalf("Usage once the store answers = %+v, %v; want 4096", u, err)
	}
}
