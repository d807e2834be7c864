//go:build linux

package fusefs

import (
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestCacheHitsPerLayer: the attribute cache's hits and misses are counted
// once, per layer, in the layer's stats (the cache itself counts nothing).
func TestCacheHitsPerLayer(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "etc/hostname", "x")
	root, acct := newTestRoot(t, dir)
	for range 3 {
		if _, errno := lookupPath(t, root, "etc/hostname"); errno != 0 {
			t.Fatal(errno)
		}
	}
	if _, errno := lookupPath(t, root, "missing"); errno == 0 {
		t.Fatal("lookup of a missing name succeeded")
	}
	// etc and etc/hostname miss once, then hit twice each; missing misses.
	var st usage.LayerStats
	acct.stats(&st)
	if st.CacheHits != 4 || st.CacheMisses != 3 {
		t.Fatalf("cache hits, misses = %d, %d; want 4, 3", st.CacheHits, st.CacheMisses)
	}
}
