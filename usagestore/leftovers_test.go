package usagestore

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestOpenRemovesTemporaryFiles: the temporary files of record writes a
// crash interrupted are removed at Open; nothing else is.
func TestOpenRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, profilesDir)
	if err := os.MkdirAll(prof, 0o700); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(dir, ".tmp-"+imagesFile+"-123456"),
		filepath.Join(prof, ".tmp-"+layerA.Encoded()+".json-987654"),
	}
	kept := []string{
		filepath.Join(dir, "notes.txt"),
		filepath.Join(prof, layerB.Encoded()+".json"),
	}
	for _, p := range append(slices.Clone(leftovers), kept...) {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory of that name is not a file a write left.
	keptDir := filepath.Join(prof, ".tmp-x.json-1")
	if err := os.Mkdir(keptDir, 0o700); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	for _, p := range leftovers {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	for _, p := range append(kept, keptDir) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}
