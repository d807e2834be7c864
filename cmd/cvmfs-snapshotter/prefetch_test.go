package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestPrefetchProfiles: without usage records (a separate FUSE server, or
// before they are open) the profile is the published one; a missing or
// hostile published profile gives nothing, never a failure.
func TestPrefetchProfiles(t *testing.T) {
	repo := t.TempDir()
	layer := digest.FromString("layer")
	meta := filepath.Join(repo, ".layers", layer.Encoded()[:2], layer.Encoded(), ".metadata")
	if err := os.MkdirAll(filepath.Join(filepath.Dir(meta), "layerfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, records := range []*usageRecords{nil, new(usageRecords)} {
		src := prefetchProfiles(ducc.New(repo), records)
		if got, err := src(ctx, layer); err != nil || len(got) != 0 {
			t.Fatalf("no profile anywhere: %q, %v", got, err)
		}
		b, _ := json.Marshal(usage.PublishedProfile{Version: 1, Layer: layer, Files: []string{"bin/sh", "../../etc/shadow", "bin/sh", "lib/x"}})
		if err := os.WriteFile(filepath.Join(meta, usage.PublishedProfileName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := src(ctx, layer); err != nil || !slices.Equal(got, []string{"bin/sh", "lib/x"}) {
			t.Fatalf("published profile: %q, %v", got, err)
		}
		if err := os.WriteFile(filepath.Join(meta, usage.PublishedProfileName), []byte("{not json"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := src(ctx, layer); err != nil || len(got) != 0 {
			t.Fatalf("malformed published profile: %q, %v", got, err)
		}
		os.Remove(filepath.Join(meta, usage.PublishedProfileName))
	}
}
