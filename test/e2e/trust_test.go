package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	containerd "github.com/containerd/containerd/v2/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// Images a hostile publisher pushes to take over the layers another image
// uses on the same node (the same containerd namespace, as every CRI pull
// shares k8s.io). In both the genuine image is pulled after the hostile
// one; its containers must read its own bytes, also after the daemon
// restarts.

// genuineOSRelease is what the genuine image's /etc/os-release holds (the
// base layer's): cat reports its size.
const genuineOSRelease = "read 1 files, 15 bytes"

// elsewhereLayer is a layer of another image in the repository, which the
// hostile images point at: no probe binary, another os-release.
func elsewhereLayer() []byte {
	return testutil.MustLayer(testutil.Dir("etc"), testutil.File("etc/os-release", "NAME=a layer of another image in the repository\n"))
}

// ingestElsewhere writes an image of elsewhereLayer into the repository,
// pushes the genuine app image, and returns the app's reference and
// layers and the digest of the layer elsewhere.
func ingestElsewhere(t *testing.T, ctx context.Context, env *harness.Env) (string, []digest.Digest, digest.Digest) {
	t.Helper()
	elsewhereRef, elsewhere := push(t, env, "elsewhere", elsewhereLayer())
	ingest(t, ctx, env, elsewhereRef)
	ref, layers := pushApp(t, env)
	return ref, layers, elsewhere[0]
}

// checkGenuine runs a container of img twice, before and after a restart
// of the daemon, and fails t unless both read the genuine bytes.
func checkGenuine(t *testing.T, ctx context.Context, env *harness.Env, img containerd.Image) {
	t.Helper()
	if out := run(t, ctx, env, img, harness.RunOptions{}, "cat", "/etc/os-release"); !strings.Contains(out, genuineOSRelease) {
		t.Fatalf("container of the genuine image read %q, want %q", out, genuineOSRelease)
	}
	if _, err := env.RestartSnapshotter(ctx, harness.Graceful); err != nil {
		t.Fatal(err)
	}
	if out := run(t, ctx, env, img, harness.RunOptions{}, "cat", "/etc/os-release"); !strings.Contains(out, genuineOSRelease) {
		t.Fatalf("after a restart, a container of the genuine image read %q, want %q", out, genuineOSRelease)
	}
}

// checkMissing fails t unless cvmfsctl missing lists ref with reason.
func checkMissing(t *testing.T, ctx context.Context, env *harness.Env, ref, reason string) {
	t.Helper()
	out, err := env.Cvmfsctl(ctx, "missing")
	if err != nil {
		t.Fatalf("cvmfsctl missing: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, ref+" ") && strings.Contains(line, reason) {
			return
		}
	}
	t.Errorf("cvmfsctl missing does not list %s with reason %s:\n%s", ref, reason, out)
}

// TestLayerWithoutDiffIDPulled: a layer of the repository whose
// layers.json is gone cannot have its chain checked: it is pulled, with
// its own reason in the images record.
func TestLayerWithoutDiffIDPulled(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	dir, err := env.Repo.LayerDir(layers[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ".metadata", "layers.json")); err != nil {
		t.Fatal(err)
	}
	env.Registry.Reset()

	ctx = env.Namespace(ctx, "nodiffid")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers, layers[2])
	checkRemote(t, ctx, env, img, true, true, false)
	checkMissing(t, ctx, env, ref, "no-diff-id")
	run(t, ctx, env, img, harness.RunOptions{}, "cat", "/app/file-000")
}

// TestRemoteAnnotationIgnored: an image republishes the genuine image's
// base layer with the annotation containerd.io/snapshot/remote naming a
// layer of the repository. containerd copies it into the labels of the
// layer's Prepare and Commit; the snapshotter must not take it, or at its
// next start it mounts the named layer over the genuine base.
func TestRemoteAnnotationIgnored(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, _, elsewhere := ingestElsewhere(t, ctx, env)
	hostile, err := testutil.ImageAnnotated([]string{harness.ProbePath, "echo", "hostile"}, []string{"PATH=/bin"},
		[]map[string]string{{"containerd.io/snapshot/remote": elsewhere.String()}}, base(t))
	if err != nil {
		t.Fatal(err)
	}
	hostileRef, _ := pushImage(t, env, "hostile", hostile)

	ctx = env.Namespace(ctx, "shared")
	if _, err := env.Pull(ctx, hostileRef, harness.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRemote(t, ctx, env, img, false, false, false)
	if !strings.Contains(env.SnapshotterLog(), "dropped labels only the snapshotter sets") {
		t.Errorf("the daemon did not log the dropped annotation")
	}
	checkGenuine(t, ctx, env, img)
	checkRemote(t, ctx, env, img, false, false, false)
}

// TestLyingDiffIDRefused: an image's manifest points at a layer of the
// repository while its config claims the diff ID of the genuine image's
// base layer. Served under the chain ID containerd asks for, that layer
// would stand for the genuine base in every later pull. It must not be
// served: the hostile pull downloads it, and containerd's apply refuses
// the lying diff ID.
func TestLyingDiffIDRefused(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, layers, elsewhere := ingestElsewhere(t, ctx, env)
	ingest(t, ctx, env, ref)

	genuine, err := harness.Image(base(t))
	if err != nil {
		t.Fatal(err)
	}
	gcf, err := genuine.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	hostile, err := harness.Image(elsewhereLayer())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := hostile.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs = []v1.Hash{gcf.RootFS.DiffIDs[0]}
	if hostile, err = mutate.ConfigFile(hostile, cf); err != nil {
		t.Fatal(err)
	}
	hostileRef, hostileLayers := pushImage(t, env, "hostile", hostile)
	if hostileLayers[0] != elsewhere {
		t.Fatalf("the hostile image's layer is %s, want the repository's %s", hostileLayers[0], elsewhere)
	}
	env.Registry.Reset()

	ctx = env.Namespace(ctx, "shared")
	if _, err := env.Pull(ctx, hostileRef, harness.PullOptions{}); err == nil {
		t.Errorf("the hostile image was pulled: containerd accepted a layer under a diff id it does not have")
	} else {
		t.Logf("hostile pull: %v", err)
	}
	if !strings.Contains(env.SnapshotterLog(), "chain-mismatch") {
		t.Errorf("the daemon did not log the chain mismatch")
	}
	checkMissing(t, ctx, env, hostileRef, "chain-mismatch")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The genuine layers are still served from the repository.
	checkServed(t, env, layers)
	checkRemote(t, ctx, env, img, true, true, true)
	checkGenuine(t, ctx, env, img)
}
