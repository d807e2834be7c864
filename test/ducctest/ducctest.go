// Package ducctest writes DUCC-shaped layers by hand for tests that need a
// repository without real layer blobs: the layer's files under layerfs,
// the nested-catalog marker at its root and .metadata/layers.json exactly
// as DUCC writes it (ducc.LayersJSON). Tests that have a real blob use
// ducc's WriteLayer instead.
//
// It must not be imported by production code.
package ducctest

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
)

// DiffID is the diff ID WriteLayer records for layer: a stand-in for the
// digest of an uncompressed tar that does not exist. A base layer's chain
// ID is its diff ID.
func DiffID(layer digest.Digest) digest.Digest {
	return digest.FromString("uncompressed " + layer.String())
}

// WriteLayer lays out layer under repo as DUCC does, with files (path →
// content) in its layerfs and DiffID(layer) and diffSize in its
// layers.json, and returns the layer's directory.
func WriteLayer(t testing.TB, repo string, layer digest.Digest, files map[string]string, diffSize int64) string {
	t.Helper()
	dir := filepath.Join(repo, ".layers", layer.Encoded()[:2], layer.Encoded())
	files = maps.Clone(files)
	if files == nil {
		files = map[string]string{}
	}
	files[ducc.CatalogMarker] = ""
	for name, body := range files {
		p := filepath.Join(dir, "layerfs", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meta, err := ducc.LayersJSON(layer, DiffID(layer), diffSize, time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ".metadata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".metadata", "layers.json"), meta, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
