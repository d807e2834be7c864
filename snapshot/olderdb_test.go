package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOlderDatabaseKeepsNewerDirs: an older copy of metadata.db put back
// does not know the snapshots made since. Neither the next start, nor
// Cleanup, nor the new snapshots that reuse their ids delete their
// directories: they are set aside with their content; and the older
// database's own orphans are still cleaned up.
func TestOlderDatabaseKeepsNewerDirs(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lfs := newFakeLayerFS()
	sn := newTestSnapshotter(t, root, lfs)
	orphan := removeFromMetadataOnly(t, sn, "orphan")
	if _, err := sn.Prepare(ctx, "old", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(root, "metadata.db")
	backup, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}

	sn = newTestSnapshotter(t, root, lfs)
	for _, key := range []string{"newer-a", "newer-b"} {
		ms, err := sn.Prepare(ctx, key, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ms[0].Source, "data-"+key), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(db, backup, 0o600); err != nil {
		t.Fatal(err)
	}

	sn = newTestSnapshotter(t, root, lfs)
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"newer-c", "newer-d"} {
		if _, err := sn.Prepare(ctx, key, ""); err != nil {
			t.Fatalf("Prepare with an older database: %v", err)
		}
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	var data []string
	for _, files := range snapshotDirs(t, root) {
		for _, f := range files {
			if strings.HasPrefix(f, "data-") {
				data = append(data, f)
			}
		}
	}
	slices.Sort(data)
	if want := []string{"data-newer-a", "data-newer-b"}; !slices.Equal(data, want) {
		t.Errorf("content of the newer snapshots left: %v, want %v", data, want)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan of the older database left: %v", err)
	}
}
