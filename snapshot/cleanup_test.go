package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots/storage"
)

// removeFromMetadataOnly prepares key and removes it from the metadata
// but not from disk, as a Remove whose directory removal failed (or a
// crash right after its transaction) leaves it. It returns the directory.
func removeFromMetadataOnly(t *testing.T, sn *snapshotter, key string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, key, ""); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := sn.ms.WithTransaction(ctx, true, func(ctx context.Context) (err error) {
		id, _, err = storage.Remove(ctx, key)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	dir := sn.snapshotDir(id)
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// snapshotDirs lists <root>/snapshots with each directory's fs content.
func snapshotDirs(t *testing.T, root string) map[string][]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		files, _ := os.ReadDir(filepath.Join(root, "snapshots", e.Name(), "fs"))
		names := []string{}
		for _, f := range files {
			names = append(names, f.Name())
		}
		sort.Strings(names)
		out[e.Name()] = names
	}
	return out
}

// TestNewDatabaseKeepsSnapshotDirs: when metadata.db is deleted (or lost)
// but snapshot directories remain (the upper dirs of running containers
// among them), neither the next start, nor an explicit Cleanup, nor a new
// snapshot taking the same id deletes them.
func TestNewDatabaseKeepsSnapshotDirs(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	lfs := newFakeLayerFS()
	sn := newTestSnapshotter(t, root, lfs)
	for _, key := range []string{"base", "container"} {
		if _, err := sn.Prepare(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
	}
	// The containers wrote into their upper dirs.
	for id := range snapshotDirs(t, root) {
		if err := os.WriteFile(filepath.Join(sn.upperPath(id), "data-"+id), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshotDirs(t, root)
	if len(before) != 2 {
		t.Fatalf("snapshot dirs = %v", before)
	}
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "metadata.db")); err != nil {
		t.Fatal(err)
	}

	sn2 := newTestSnapshotter(t, root, lfs)
	if got := snapshotDirs(t, root); !sameDirs(got, before) {
		t.Fatalf("start with a new database: dirs = %v, want %v kept", got, before)
	}
	if err := sn2.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := snapshotDirs(t, root); !sameDirs(got, before) {
		t.Fatalf("Cleanup with a new database: dirs = %v, want %v kept", got, before)
	}

	// The new database hands out id 1 again: the old directory 1 is moved
	// aside, its content intact, and the new snapshot gets an empty one.
	ms, err := sn2.Prepare(ctx, "new", "")
	if err != nil {
		t.Fatalf("Prepare over an old directory: %v", err)
	}
	if files, _ := os.ReadDir(ms[0].Source); len(files) != 0 {
		t.Fatalf("new snapshot sees old content: %v", files)
	}
	var contents []string
	for _, files := range snapshotDirs(t, root) {
		contents = append(contents, strings.Join(files, ","))
	}
	sort.Strings(contents)
	if want := []string{"", "data-1", "data-2"}; strings.Join(contents, ";") != strings.Join(want, ";") {
		t.Fatalf("contents after Prepare = %q, want %q", contents, want)
	}

	// Orphans of the new database itself are still cleaned up; the old
	// directories are not.
	orphan := removeFromMetadataOnly(t, sn2, "orphan")
	if err := sn2.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphan of this database left: %v", err)
	}
	if got := len(snapshotDirs(t, root)); got != 3 {
		t.Fatalf("%d dirs after Cleanup, want the 2 old ones and the new one", got)
	}
}

// TestEmptyDatabaseKeepsDirsAtStart: a database that holds no snapshot
// proves nothing about the directories on disk; the start keeps them.
func TestEmptyDatabaseKeepsDirsAtStart(t *testing.T) {
	root := t.TempDir()
	lfs := newFakeLayerFS()
	sn := newTestSnapshotter(t, root, lfs)
	orphan := removeFromMetadataOnly(t, sn, "x")
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	newTestSnapshotter(t, root, lfs)
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("start with an empty database removed %s: %v", orphan, err)
	}
}

func sameDirs(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, ",") != strings.Join(b[k], ",") {
			return false
		}
	}
	return true
}
