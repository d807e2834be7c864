package usagestore

import (
	"context"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestImagesAndMissing: image records keep each layer's last unpack; the
// images not fully served come most pulled first, and persist.
func TestImagesAndMissing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	s.Record(ctx, snapshot.LayerEvent{Image: "served:1", Layer: layerA, Served: true})
	s.Record(ctx, snapshot.LayerEvent{Image: "half:1", Layer: layerA, Served: true})
	s.Record(ctx, snapshot.LayerEvent{Image: "half:1", Layer: layerB, Reason: "not-in-repository"})
	for range 2 {
		s.Record(ctx, snapshot.LayerEvent{Image: "zstd:1", Layer: layerB, Reason: "zstd"})
		s.Record(ctx, snapshot.LayerEvent{Image: "zstd:1", RawLayer: "sha256:nope", Reason: "malformed-label"})
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir)
	missing := s2.Missing()
	var names []string
	for _, m := range missing {
		names = append(names, m.Image)
	}
	if !slices.Equal(names, []string{"zstd:1", "half:1"}) {
		t.Fatalf("missing %v, want [zstd:1 half:1]", names)
	}
	z := missing[0]
	if z.Pulls != 4 || len(z.Layers) != 2 || z.Layers[0].Reason != "zstd" || z.Layers[0].Pulls != 2 || z.Layers[1].RawLayer != "sha256:nope" {
		t.Errorf("zstd image record %+v", z)
	}
	// Served later: no longer missing.
	s2.Record(ctx, snapshot.LayerEvent{Image: "half:1", Layer: layerB, Served: true})
	if m := s2.Missing(); len(m) != 1 || m[0].Image != "zstd:1" {
		t.Errorf("missing after the layer was served: %+v", m)
	}
}

// TestLongLabelsStayValid: a reference longer than kept, with a multi-byte
// rune across the cut (or invalid UTF-8), is kept as valid UTF-8 (it names
// metrics series).
func TestLongLabelsStayValid(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	long := strings.Repeat("a", maxRefLen-1) + "é" + "tail"
	s.Record(ctx, snapshot.LayerEvent{Image: long, Layer: layerA, Served: true})
	s.Record(ctx, snapshot.LayerEvent{Image: "bad\xffref", Layer: layerB, Served: true})
	for _, l := range []digest.Digest{layerA, layerB} {
		if got := s.ImageOf(l); !utf8.ValidString(got) || len(got) > maxRefLen || got == "" {
			t.Errorf("ImageOf(%s) = %q (%d bytes): want valid UTF-8 of at most %d bytes", l, got, len(got), maxRefLen)
		}
	}
}

// TestForgedImageDigest: an image record naming an invalid layer digest
// keeps it only as a raw label; reports still answer.
func TestForgedImageDigest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rec := `{"Version":1,"Images":[{"Image":"app:1","Layers":[{"Layer":"sha256:../../etc","Served":true},{"Layer":"` + layerA.String() + `","Served":true}]}]}`
	if err := os.WriteFile(filepath.Join(dir, imagesFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, WithContents(func(context.Context, digest.Digest) (usage.Contents, error) {
		return usage.Contents{Files: 1, Bytes: 1}, nil
	}))
	rows, err := s.Report(ctx, []string{"app:1"})
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if len(rows) != 2 || rows[0].Layer != "" || rows[1].Layer != layerA {
		t.Errorf("report %+v: want the forged digest dropped, layer A kept", rows)
	}
	if img, _ := s.Image("app:1"); img.Layers[0].RawLayer != "sha256:../../etc" {
		t.Errorf("image record %+v: want the forged digest kept as a raw label", img)
	}
}
