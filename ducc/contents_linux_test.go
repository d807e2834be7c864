package ducc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// TestContents counts regular files and their sizes, not whiteouts,
// catalog markers, directories or symlinks, and never leaves the layer.
func TestContents(t *testing.T) {
	root := t.TempDir()
	layer := digest.Digest("sha256:" + strings.Repeat("c", 64))
	fsDir := filepath.Join(root, ".layers", "cc", layer.Encoded(), "layerfs")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{filepath.Join(fsDir, "usr", "lib"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, size := range map[string]int{
		"usr/lib/a": 100, "usr/b": 20, "c": 3,
		".wh.gone": 0, "usr/.wh..wh..opq": 0, CatalogMarker: 0, "usr/" + CatalogMarker: 0,
	} {
		if err := os.WriteFile(filepath.Join(fsDir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "big"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(fsDir, "link")); err != nil {
		t.Fatal(err)
	}
	files, bytes, err := New(root).Contents(context.Background(), layer)
	if err != nil || files != 3 || bytes != 123 {
		t.Errorf("Contents = %d files, %d bytes, %v; want 3, 123", files, bytes, err)
	}
	if _, _, err := New(root).Contents(context.Background(), digest.Digest("sha256:"+strings.Repeat("d", 64))); !errdefs.IsNotFound(err) {
		t.Errorf("Contents of an absent layer: %v", err)
	}
}

// A walk abandoned when its context ends never touches the caller's
// descriptor, which is closed on return (run with -race: before, the walk
// read dir.Fd() after dir.Close()).
func TestContentsAbandoned(t *testing.T) {
	root := t.TempDir()
	layer := digest.Digest("sha256:" + strings.Repeat("c", 64))
	fsDir := filepath.Join(root, ".layers", "cc", layer.Encoded(), "layerfs")
	if err := os.MkdirAll(filepath.Join(fsDir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo := New(root)
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := repo.Contents(ctx, layer); err == nil {
			continue // the walk won the race: nothing abandoned
		} else if !errdefs.IsUnavailable(err) && !errors.Is(err, context.Canceled) {
			t.Fatalf("Contents of a cancelled context: %v", err)
		}
	}
}
