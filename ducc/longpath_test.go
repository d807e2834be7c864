//go:build linux

package ducc_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestWriteLayerPathLongerThanPathMax: a layer whose paths nest deeper
// than PATH_MAX cannot be written (the extraction works on whole paths):
// it is refused as unsupported, so that an ingest skips it and goes on with
// the image's other layers (containerd pulls that one), and nothing of it
// is left in the store.
func TestWriteLayerPathLongerThanPathMax(t *testing.T) {
	ctx := context.Background()
	var entries []testutil.Entry
	var rel []string
	for i := range 20 {
		rel = append(rel, strings.Repeat(string(rune('a'+i)), 250))
		entries = append(entries, testutil.Dir(strings.Join(rel, "/")))
	}
	deep := strings.Join(append(rel, "file"), "/")
	entries = append(entries, testutil.File(deep, "deep"))
	repo := ducc.New(filepath.Join(t.TempDir(), "repo"))
	blob, _ := blobOf(testutil.MustLayer(entries...), "")
	_, err := repo.WriteLayer(ctx, blob)
	if !errors.Is(err, ducc.ErrUnsupportedLayer) {
		t.Fatalf("write a layer %d bytes deep: %.200v; want ErrUnsupportedLayer", len(deep), err)
	}
	if _, err := repo.Lookup(ctx, blob.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("layer found after a failed write: %v", err)
	}
	dir, _ := repo.LayerDir(blob.Digest)
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "*")); len(left) != 0 {
		t.Errorf("left in the store: %v", left)
	}
}
