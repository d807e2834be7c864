package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// testContext bounds one scenario.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// push builds an image from layers, pushes it as repo:latest and returns
// its reference and layer digests.
func push(t *testing.T, env *harness.Env, repo string, layers ...[]byte) (string, []digest.Digest) {
	t.Helper()
	img, err := harness.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	return pushImage(t, env, repo, img)
}

// pushImage pushes img as repo:latest and returns its reference and layer
// digests.
func pushImage(t *testing.T, env *harness.Env, repo string, img v1.Image) (string, []digest.Digest) {
	t.Helper()
	ref, err := env.Registry.Push(repo, "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := harness.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	return ref, ds
}

// pushApp pushes the three-layer app image (base, lib, app) as app:latest.
func pushApp(t *testing.T, env *harness.Env) (string, []digest.Digest) {
	t.Helper()
	return push(t, env, "app", append([][]byte{base(t)}, fixtures.app...)...)
}

// ingest writes ref into the environment's repository.
func ingest(t *testing.T, ctx context.Context, env *harness.Env, ref string) {
	t.Helper()
	out, err := env.Ingest(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cvmfsctl ingest %s:\n%s", ref, out)
}

// checkServed fails t unless the registry served exactly the layer blobs
// in want among layers.
func checkServed(t *testing.T, env *harness.Env, layers []digest.Digest, want ...digest.Digest) {
	t.Helper()
	served := env.Registry.Served()
	wanted := map[digest.Digest]bool{}
	for _, d := range want {
		wanted[d] = true
	}
	for i, d := range layers {
		_, got := served[d]
		switch {
		case got && !wanted[d]:
			t.Errorf("layer %d (%s) was fetched from the registry (%d bytes); want it served from CVMFS", i, d, served[d])
		case !got && wanted[d]:
			t.Errorf("layer %d (%s) was not fetched from the registry; want it downloaded", i, d)
		}
	}
}

// checkRemote fails t unless layer i of img is a remote snapshot (and
// containerd holds no blob for it) exactly when remote[i].
func checkRemote(t *testing.T, ctx context.Context, env *harness.Env, img containerd.Image, remote ...bool) {
	t.Helper()
	states, err := env.Layers(ctx, img, harness.SnapshotterName)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != len(remote) {
		t.Fatalf("image has %d layers, want %d", len(states), len(remote))
	}
	for i, st := range states {
		if st.Remote != remote[i] {
			t.Errorf("layer %d (%s): remote snapshot = %v, want %v", i, st.Digest, st.Remote, remote[i])
		}
		if st.HasBlob == remote[i] {
			t.Errorf("layer %d (%s): blob in content store = %v, want %v", i, st.Digest, st.HasBlob, !remote[i])
		}
	}
}

// run runs the probe with args in a container from img and returns its
// stdout.
func run(t *testing.T, ctx context.Context, env *harness.Env, img containerd.Image, o harness.RunOptions, args ...string) string {
	t.Helper()
	res, err := env.Run(ctx, img, o, append([]string{harness.ProbePath}, args...)...)
	if err != nil {
		t.Fatalf("run %v: %v\nstdout: %s\nstderr: %s", args, err, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// remotePrepared counts the daemon's remote-snapshot-prepared log lines.
func remotePrepared(env *harness.Env) int {
	return strings.Count(env.SnapshotterLog(), "remote-snapshot-prepared=true")
}
