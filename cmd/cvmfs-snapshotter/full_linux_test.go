//go:build linux

package main

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestDaemonFullRoot: a daemon whose root filesystem has no free block
// left (after a first run made its database) still starts and serves.
func TestDaemonFullRoot(t *testing.T) {
	bin := buildDaemon(t)
	cfg := fmt.Sprintf("absolute-mountpoint = %q\nmount-mode = \"bind\"\n", filepath.Join(t.TempDir(), "repo"))
	dir := testutil.FullFS(t, func(root string) {
		startDaemon(t, bin, root, cfg).stop(t)
	})
	d := startDaemon(t, bin, dir, cfg)
	if _, err := d.client(t).Stat(t.Context(), "none"); err == nil {
		t.Error("Stat of a missing snapshot succeeded")
	}
	d.stop(t)
}
