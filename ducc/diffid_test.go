package ducc

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// writeLayersJSON writes body as layer's .metadata/layers.json under root
// ("" writes no file).
func writeLayersJSON(t *testing.T, root string, layer digest.Digest, body string) string {
	t.Helper()
	dir := filepath.Join(root, layersDir, layer.Encoded()[:2], layer.Encoded(), metadataDir)
	for _, d := range []string{dir, filepath.Join(filepath.Dir(dir), layerFSDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, layersJSON)
	if body != "" {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestDiffID(t *testing.T) {
	layer := digest.Digest("sha256:" + strings.Repeat("c", 64))
	other := digest.Digest("sha256:" + strings.Repeat("e", 64))
	diff := digest.Digest("sha256:" + strings.Repeat("d", 64))
	ducc, err := LayersJSON(layer, diff, 1234, time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		json string // "" = no layers.json
		bad  bool   // no usable diff ID: error wraps ErrFailedPrecondition
	}{
		{name: "as DUCC writes it", json: string(ducc)},
		{name: "minimal", json: `[{"diff-digest":"` + diff.String() + `"}]`},
		{name: "repeated", json: `[{"diff-digest":"` + diff.String() + `"},{"diff-digest":"` + diff.String() + `"}]`},
		{name: "absent", bad: true},
		{name: "no diff-digest", json: `[{"id":"x","diff-size":3}]`, bad: true},
		{name: "empty list", json: `[]`, bad: true},
		{name: "another layer's entry", json: `[{"compressed-diff-digest":"` + other.String() + `","diff-digest":"` + diff.String() + `"}]`, bad: true},
		{name: "not sha256", json: `[{"diff-digest":"sha512:` + strings.Repeat("d", 128) + `"}]`, bad: true},
		{name: "upper case", json: `[{"diff-digest":"sha256:` + strings.Repeat("D", 64) + `"}]`, bad: true},
		{name: "bare hex", json: `[{"diff-digest":"` + strings.Repeat("d", 64) + `"}]`, bad: true},
		{name: "path characters", json: `[{"diff-digest":"sha256:../../etc"}]`, bad: true},
		{name: "two different", json: `[{"diff-digest":"` + diff.String() + `"},{"diff-digest":"sha256:` + strings.Repeat("f", 64) + `"}]`, bad: true},
		{name: "not json", json: `{{{`, bad: true},
		{name: "wrong type", json: `[{"diff-digest":7}]`, bad: true},
		{name: "huge", json: string(ducc[:len(ducc)-1]) + strings.Repeat(" ", maxMetadataFile) + `]`, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeLayersJSON(t, root, layer, tc.json)
			got, err := New(root).DiffID(context.Background(), layer)
			if !tc.bad {
				if err != nil || got != diff {
					t.Fatalf("DiffID = %q, %v; want %s", got, err, diff)
				}
				return
			}
			if got != "" || !errdefs.IsFailedPrecondition(err) || errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
				t.Fatalf("DiffID = %q, %v; want an error wrapping ErrFailedPrecondition alone", got, err)
			}
		})
	}
}

// TestDiffIDAbsentLayer: a layer the repository does not hold is not found,
// whatever a stray layers.json says.
func TestDiffIDAbsentLayer(t *testing.T) {
	layer := digest.Digest("sha256:" + strings.Repeat("c", 64))
	root := t.TempDir()
	writeLayersJSON(t, root, layer, `[{"diff-digest":"sha256:`+strings.Repeat("d", 64)+`"}]`)
	if err := os.Remove(filepath.Join(root, layersDir, layer.Encoded()[:2], layer.Encoded(), layerFSDir)); err != nil {
		t.Fatal(err)
	}
	if got, err := New(root).DiffID(context.Background(), layer); !errdefs.IsNotFound(err) {
		t.Fatalf("DiffID = %q, %v; want ErrNotFound", got, err)
	}
}

// TestDiffIDNoSymlink: a layers.json that is a symlink (to a file naming
// the diff ID an attacker wants) is not followed.
func TestDiffIDNoSymlink(t *testing.T) {
	layer := digest.Digest("sha256:" + strings.Repeat("c", 64))
	diff := digest.Digest("sha256:" + strings.Repeat("d", 64))
	root := t.TempDir()
	path := writeLayersJSON(t, root, layer, "")
	elsewhere := filepath.Join(t.TempDir(), "layers.json")
	if err := os.WriteFile(elsewhere, []byte(`[{"diff-digest":"`+diff.String()+`"}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, path); err != nil {
		t.Fatal(err)
	}
	if got, err := New(root).DiffID(context.Background(), layer); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("DiffID = %q, %v; want ErrFailedPrecondition, not the symlink followed", got, err)
	}
}
