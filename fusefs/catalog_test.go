//go:build linux

package fusefs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCatalogMarkers: DUCC's nested-catalog marker at the layer root is
// hidden; a ".cvmfscatalog" below the root is the image's own file (CVMFS
// nests a catalog there and keeps the file), shown with its bytes as a
// pull of the image shows it.
func TestCatalogMarkers(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, ".cvmfscatalog", "")
	writeFile(t, src, "usr/lib/.cvmfscatalog", "the image's own bytes\n")
	writeFile(t, src, "usr/lib/libx.so", "x")
	_, mp, _ := mountLayer(t, src)

	if _, err := os.Lstat(filepath.Join(mp, ".cvmfscatalog")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the layer root's marker: lstat = %v, want not found", err)
	}
	ents, err := os.ReadDir(mp)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == ".cvmfscatalog" }) {
		t.Errorf("the layer root lists its catalog marker")
	}
	b, err := os.ReadFile(filepath.Join(mp, "usr/lib/.cvmfscatalog"))
	if err != nil || string(b) != "the image's own bytes\n" {
		t.Errorf("usr/lib/.cvmfscatalog = %q, %v; want the image's bytes", b, err)
	}
	ents, err = os.ReadDir(filepath.Join(mp, "usr/lib"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{".cvmfscatalog", "libx.so"}; !slices.Equal(names, want) {
		t.Errorf("usr/lib lists %q, want %q", names, want)
	}
}
