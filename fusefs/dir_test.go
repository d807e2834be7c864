//go:build linux

package fusefs

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
)

// TestLargeDirectory lists a directory that takes many READDIRPLUS batches
// (each served through its own handle, see skippedRequests), with whiteouts and
// markers among the entries, twice: the second listing and walk come from
// the kernel's caches and reach the daemon not at all.
func TestLargeDirectory(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	var want []string
	for i := range 1500 {
		name := "file-" + strconv.Itoa(i) + "-with-a-longish-name"
		switch i % 10 {
		case 3:
			writeFile(t, src, "big/.wh."+name, "")
		case 7:
			writeFile(t, src, "big/"+name+"/inner", "")
		default:
			writeFile(t, src, "big/"+name, "")
		}
		want = append(want, name)
	}
	// Below the layer root a catalog marker is the image's own file: shown.
	writeFile(t, src, "big/.cvmfscatalog", "")
	want = append(want, ".cvmfscatalog")
	slices.Sort(want)
	m, mp, _ := mountLayer(t, src)

	list := func() []string {
		ents, err := os.ReadDir(filepath.Join(mp, "big"))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		return got
	}
	walk := func() int {
		n := 0
		err := filepath.WalkDir(mp, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			_, err = os.Lstat(p)
			n++
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := list(); !slices.Equal(got, want) {
		t.Fatalf("listing has %d entries, want %d; first differences: %v", len(got), len(want), firstDiff(got, want))
	}
	first := walk()
	before := statsOf(t, m)[0]
	if got := list(); !slices.Equal(got, want) {
		t.Fatalf("second listing differs")
	}
	if again := walk(); again != first {
		t.Fatalf("second walk saw %d entries, first %d", again, first)
	}
	after := statsOf(t, m)[0]
	if after.Lookups != before.Lookups || after.Readdirs != before.Readdirs || after.Getattrs != before.Getattrs {
		t.Errorf("warm walk reached the daemon: lookups %d->%d readdirs %d->%d getattrs %d->%d",
			before.Lookups, after.Lookups, before.Readdirs, after.Readdirs, before.Getattrs, after.Getattrs)
	}
}

func firstDiff(got, want []string) []string {
	var out []string
	for i := 0; i < max(len(got), len(want)) && len(out) < 4; i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			out = append(out, g+" != "+w)
		}
	}
	return out
}

// Once a directory is listed, a lookup of a name it lacks is answered from
// the listing, without resolving or statting anything: a name that appears
// in the backing tree afterwards (layers never change) stays absent, and
// the names it holds, whiteouts included, are still found.
func TestLookupAnsweredFromListing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "d/a", "a")
	writeFile(t, dir, "d/.wh.gone", "")
	root, acct := newTestRoot(t, dir)
	d, errno := lookupPath(t, root, "d")
	if errno != 0 {
		t.Fatal(errno)
	}
	if _, errno := lookupPath(t, d, "late"); errno != syscall.ENOENT {
		t.Fatalf("lookup of an absent name before listing: %v", errno)
	}
	h := &dirHandle{n: d, fd: -1}
	if errno := h.load(); errno != 0 {
		t.Fatal(errno)
	}
	h.Releasedir(context.Background(), 0)
	writeFile(t, dir, "d/new", "n")
	misses := acct.cacheMisses.Load()
	if _, errno := lookupPath(t, d, "new"); errno != syscall.ENOENT {
		t.Errorf("lookup of a name the listing lacks: %v, want ENOENT from the listing", errno)
	}
	if n := acct.cacheMisses.Load() - misses; n != 0 {
		t.Errorf("a lookup answered from the listing went to the cache %d times", n)
	}
	for _, name := range []string{"a", "gone"} {
		if _, errno := lookupPath(t, d, name); errno != 0 {
			t.Errorf("lookup %s after listing: %v", name, errno)
		}
	}
}
