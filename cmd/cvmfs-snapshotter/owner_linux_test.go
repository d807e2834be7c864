//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
)

// TestDaemonClaimedOwnership: a repository whose .layers and layer roots
// are owned by 999:995 stands in for a CVMFS client with
// CVMFS_CLAIM_OWNERSHIP=yes running as the cvmfs user. The daemon says so
// at start, with the setting that fixes it, and pulls every layer instead
// of serving it with the client's owner.
func TestDaemonClaimedOwnership(t *testing.T) {
	eachMountMode(t, func(t *testing.T, bin, mode, dir string) {
		repo := filepath.Join(dir, "repo")
		layer := layerDigest("claimed")
		layerDir := ducctest.WriteLayer(t, repo, layer, map[string]string{"bin/tool": "tool"}, 4)
		for _, p := range []string{filepath.Join(repo, ".layers"), filepath.Join(layerDir, "layerfs")} {
			if err := os.Lchown(p, 999, 995); err != nil {
				t.Fatal(err)
			}
		}
		cfg := fmt.Sprintf("absolute-mountpoint = %q\nmount-mode = %q\nlookup-timeout = \"2s\"\n", repo, mode)
		d := startDaemon(t, bin, dir, cfg)
		defer d.stop(t)
		chain := ducctest.DiffID(layer).String()
		ms, err := d.client(t).Prepare(context.Background(), "extract-1 "+chain, "", snapshots.WithLabels(map[string]string{
			"containerd.io/snapshot.ref":              chain,
			"containerd.io/snapshot/cri.layer-digest": layer.String(),
		}))
		if err != nil || len(ms) != 1 {
			t.Fatalf("Prepare of a layer owned by the client = %+v, %v; want writable mounts (a pull)", ms, err)
		}
		if mps, _ := mountutil.Under(d.root); len(mps) != 0 {
			t.Fatalf("layer mounted although owned by the client: %+v", mps)
		}
		logs := readFile(filepath.Join(dir, "daemon.log"))
		if n := strings.Count(logs, "CVMFS_CLAIM_OWNERSHIP=no"); n < 2 {
			t.Fatalf("the log names CVMFS_CLAIM_OWNERSHIP=no %d times, want at start and at the Prepare:\n%s", n, logs)
		}
	})
}
