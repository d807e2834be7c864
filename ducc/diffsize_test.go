package ducc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestDiffSize(t *testing.T) {
	layer := digest.Digest("sha256:" + strings.Repeat("c", 64))
	for _, tc := range []struct {
		name     string
		json     string // "" = no layers.json
		want     int64
		notFound bool // error wraps ErrNotFound
		fails    bool
	}{
		{name: "recorded", json: `[{"id":"x","diff-size":1234}]`, want: 1234},
		{name: "first positive entry", json: `[{"id":"x"},{"id":"y","diff-size":99}]`, want: 99},
		{name: "absent", notFound: true, fails: true},
		{name: "no size", json: `[{"id":"x"}]`, notFound: true, fails: true},
		{name: "zero size", json: `[{"id":"x","diff-size":0}]`, notFound: true, fails: true},
		{name: "negative size", json: `[{"id":"x","diff-size":-5}]`, notFound: true, fails: true},
		{name: "empty list", json: `[]`, notFound: true, fails: true},
		{name: "not json", json: `{{{`, fails: true},
		{name: "size of the wrong type", json: `[{"id":"x","diff-size":"big"}]`, fails: true},
		// Valid, but larger than any metadata file: not read whole.
		{name: "huge", json: `[{"id":"x","diff-size":7}` + strings.Repeat(" ", maxMetadataFile) + `]`, fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, layersDir, layer.Encoded()[:2], layer.Encoded(), metadataDir)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if tc.json != "" {
				if err := os.WriteFile(filepath.Join(dir, layersJSON), []byte(tc.json), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := New(root).DiffSize(context.Background(), layer)
			if tc.fails {
				if err == nil || (tc.notFound && !errdefs.IsNotFound(err)) {
					t.Fatalf("DiffSize = %d, %v; want an error (not found: %v)", got, err, tc.notFound)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("DiffSize = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
