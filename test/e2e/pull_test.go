package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/treediff"
)

// 4a: every layer is in the repository: the registry serves no layer blob
// and the container sees the image. In both mount modes; in FUSE mode the
// daemon's accounting sees what the container read.
//
// Each mode runs over a plain directory and over a CVMFS-like store (a FUSE
// mount behaving like a cvmfs2 client configured as docs/cvmfs-client.md
// says: CVMFS_CLAIM_OWNERSHIP=no, so files are root's as published).
func TestAllLayersFromCVMFS(t *testing.T) {
	for _, mode := range []string{"fuse", "bind"} {
		t.Run(mode, func(t *testing.T) { testAllLayersFromCVMFS(t, mode, false) })
		t.Run("cvmfs-like-"+mode, func(t *testing.T) { testAllLayersFromCVMFS(t, mode, true) })
	}
}

func testAllLayersFromCVMFS(t *testing.T, mode string, cvmfsLike bool) {
	env := start(t, harness.Options{MountMode: mode, Accounting: "bytes", Metrics: true,
		CVMFSLike: cvmfsLike, CVMFSMissDelay: 5 * time.Millisecond})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	env.Registry.Reset()

	ctx = env.Namespace(ctx, "all")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers)
	checkRemote(t, ctx, env, img, true, true, true)
	if n := remotePrepared(env); n < len(layers) {
		t.Errorf("daemon logged remote-snapshot-prepared=true %d times, want >= %d", n, len(layers))
	}
	out := run(t, ctx, env, img, harness.RunOptions{}, "cat", "/etc/os-release", "/lib/file-000", "/app/file-019")
	if want := "read 3 files, 131087 bytes"; !strings.Contains(out, want) {
		t.Errorf("container output %q, want %q", out, want)
	}
	if cvmfsLike {
		tree, err := treediff.Parse(run(t, ctx, env, img, harness.RunOptions{}, "walk", "/etc"))
		if err != nil {
			t.Fatal(err)
		}
		if o := tree["/etc/os-release"]; o.UID != 0 || o.GID != 0 {
			t.Errorf("the container sees /etc/os-release owned by %d:%d, want root's", o.UID, o.GID)
		}
	}
	if mode != "fuse" {
		return
	}
	stats, err := env.LayerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	read := map[digest.Digest]int64{}
	for _, s := range stats {
		read[s.Layer] = s.BytesRead
	}
	// /lib/file-000 and /app/file-019 are 64 KiB each, read whole.
	for _, i := range []int{1, 2} {
		if read[layers[i]] != 64<<10 {
			t.Errorf("daemon accounts %d bytes read from layer %d, want %d", read[layers[i]], i, 64<<10)
		}
	}
	bin, err := harness.Binary("cvmfsctl")
	if err != nil {
		t.Fatal(err)
	}
	table, err := exec.CommandContext(ctx, bin, "stats", "--address", env.MetricsAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("cvmfsctl stats: %v\n%s", err, table)
	}
	profile, err := exec.CommandContext(ctx, bin, "stats", "--address", env.MetricsAddr, "--layer", layers[2].String()).CombinedOutput()
	if err != nil {
		t.Fatalf("cvmfsctl stats --layer: %v\n%s", err, profile)
	}
	t.Logf("cvmfsctl stats:\n%s\ncvmfsctl stats --layer %s:\n%s", table, layers[2], profile)
	if !strings.Contains(string(table), layers[2].String()) || !strings.Contains(string(profile), "app/file-019") {
		t.Errorf("cvmfsctl stats does not show the layer and the file the container read")
	}
}

// 4b: some layers are in the repository: only the others are fetched.
func TestSomeLayersFromCVMFS(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	baseRef, _ := push(t, env, "base", base(t))
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, baseRef)
	env.Registry.Reset()

	ctx = env.Namespace(ctx, "some")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers, layers[1:]...)
	checkRemote(t, ctx, env, img, true, false, false)
	// The daemon says why it fell back, per layer.
	for _, d := range layers[1:] {
		found := false
		for _, l := range strings.Split(env.SnapshotterLog(), "\n") {
			if strings.Contains(l, d.String()) && strings.Contains(l, "not served") && strings.Contains(l, "not found") {
				found = true
			}
		}
		if !found {
			t.Errorf("no fallback log line (\"not served ... not found\") for layer %s", d)
		}
	}
	run(t, ctx, env, img, harness.RunOptions{}, "cat", "/lib/file-000", "/app/file-000", "/bin/probe")
}

// 4c: no layer is in the repository: a normal pull.
func TestNoLayersInRepository(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)

	ctx = env.Namespace(ctx, "none")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers, layers...)
	checkRemote(t, ctx, env, img, false, false, false)
	if n := remotePrepared(env); n != 0 {
		t.Errorf("daemon logged %d remote snapshots for an empty repository", n)
	}
	run(t, ctx, env, img, harness.RunOptions{}, "cat", "/lib/file-000")
}

// DUCC ingests gzip layers only: a zstd layer is skipped at ingest and
// downloaded at pull, while the gzip layers below it come from CVMFS.
func TestZstdLayerFallsBack(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	z, err := testutil.ZstdLayer(testutil.Dir("z"), testutil.File("z/file", "zstd content"))
	if err != nil {
		t.Fatal(err)
	}
	ref, layers := push(t, env, "mixed", base(t), z)
	out, err := env.Ingest(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if line := lineFor(out, layers[1].String()); !strings.Contains(line, "skipped") {
		t.Errorf("ingest of the zstd layer says %q, want skipped", line)
	}
	env.Registry.Reset()

	ctx = env.Namespace(ctx, "zstd")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers, layers[1])
	checkRemote(t, ctx, env, img, true, false)
	if out := run(t, ctx, env, img, harness.RunOptions{}, "cat", "/z/file"); !strings.Contains(out, "12 bytes") {
		t.Errorf("container output %q", out)
	}
}

// TestClaimedOwnershipPulled: over a CVMFS client that claims every file
// for its own user (CVMFS_CLAIM_OWNERSHIP=yes, the client running as the
// cvmfs user), no layer is served from the repository: each is pulled from
// the registry, and the container sees files owned as the image says.
func TestClaimedOwnershipPulled(t *testing.T) {
	env := start(t, harness.Options{CVMFSLike: true, CVMFSClaimOwnership: true})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	env.Registry.Reset()
	ctx = env.Namespace(ctx, "claimed")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if served := env.Registry.Served(); len(served) < len(layers) {
		t.Errorf("the registry served %d layer blobs, want all %d pulled", len(served), len(layers))
	}
	if n := remotePrepared(env); n != 0 {
		t.Errorf("daemon served %d layers from a store claiming ownership, want none", n)
	}
	tree, err := treediff.Parse(run(t, ctx, env, img, harness.RunOptions{}, "walk", "/etc"))
	if err != nil {
		t.Fatal(err)
	}
	if o := tree["/etc/os-release"]; o.UID != 0 || o.GID != 0 {
		t.Errorf("the container sees /etc/os-release owned by %d:%d, want root's", o.UID, o.GID)
	}
	if log := env.SnapshotterLog(); !strings.Contains(log, "CVMFS_CLAIM_OWNERSHIP") {
		t.Errorf("the daemon's log does not name the fix (CVMFS_CLAIM_OWNERSHIP)")
	}
}
