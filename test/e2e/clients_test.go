package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// 4f, containerd 2: a plain `ctr image pull` goes through the transfer
// service; the proxy plugin exports enable_remote_snapshot_annotations, so
// the layers come from CVMFS.
func TestCtrPullContainerd2(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	env.Registry.Reset()

	ns := harness.Unique("ctr")
	ctx = env.UseNamespace(ctx, ns)
	img := ctrPull(t, ctx, env, ns, ref)
	checkServed(t, env, layers)
	checkRemote(t, ctx, env, img, true, true, true)
	run(t, ctx, env, img, harness.RunOptions{}, "cat", "/app/file-003")
}

// 4f, containerd 1.6: its ctr adds no labels, so cvmfsctl pull adds them;
// its progress lines say where each layer came from. Then a container runs
// on the 1.6 daemon.
func TestCvmfsctlPullContainerd16(t *testing.T) {
	env := start(t, harness.Options{Containerd: harness.Containerd16})
	ctx := testContext(t)
	baseRef, _ := push(t, env, "base", base(t))
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, baseRef)
	env.Registry.Reset()

	ns := harness.Unique("cvmfsctl")
	ctx = env.UseNamespace(ctx, ns)
	out := cvmfsctlPull(t, env, ns, ref)
	for i, want := range []string{"from CVMFS", "downloaded", "downloaded"} {
		line := lineFor(out, layers[i].String())
		if !strings.Contains(line, want) {
			t.Errorf("cvmfsctl pull says %q for layer %d, want %q", line, i, want)
		}
	}
	if !strings.Contains(out, "3 layers, 1 from CVMFS") {
		t.Errorf("cvmfsctl pull summary missing in:\n%s", out)
	}
	checkServed(t, env, layers, layers[1:]...)
	img, err := env.Client.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkRemote(t, ctx, env, img, true, false, false)
	run(t, ctx, env, img, harness.RunOptions{}, "cat", "/app/file-004", "/bin/probe")
}

// ctrPull pulls ref with containerd 2's ctr into our snapshotter, in
// namespace ns (ctx's), and returns the image.
func ctrPull(t *testing.T, ctx context.Context, env *harness.Env, ns, ref string) containerd.Image {
	t.Helper()
	ctr, err := harness.Containerd2Tool("ctr")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, ctr, "--address", env.ContainerdSock, "--namespace", ns,
		"image", "pull", "--plain-http", "--snapshotter", harness.SnapshotterName, ref).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr image pull: %v\n%s", err, out)
	}
	img, err := env.Client.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// cvmfsctlPull runs cvmfsctl pull against env's containerd and returns its
// output.
func cvmfsctlPull(t *testing.T, env *harness.Env, ns, ref string) string {
	t.Helper()
	bin, err := harness.Binary("cvmfsctl")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "pull", ref, "--address", env.ContainerdSock, "--namespace", ns,
		"--snapshotter", harness.SnapshotterName).CombinedOutput()
	if err != nil {
		t.Fatalf("cvmfsctl pull: %v\n%s", err, out)
	}
	t.Logf("cvmfsctl pull:\n%s", out)
	return string(out)
}

// lineFor returns the first line of out that mentions s.
func lineFor(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// 4g: Kubernetes' path: the CRI plugin of containerd 1.6 and 2 with
// disable_snapshot_annotations = false, driven by a CRI client PullImage.
func TestCRIPullImage(t *testing.T) {
	for _, c := range []harness.Containerd{harness.Containerd16, harness.Containerd2} {
		t.Run(strings.ReplaceAll(c.String(), " ", "-"), func(t *testing.T) { testCRIPullImage(t, c) })
	}
}

// criPull pulls ref through env's CRI plugin (ImageService.PullImage),
// into the k8s.io namespace.
func criPull(t *testing.T, ctx context.Context, env *harness.Env, ref string) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+env.ContainerdSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)
	var resp *runtimeapi.PullImageResponse
	// The CRI plugin finishes initialising after the API answers.
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err = images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "Unimplemented") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		if strings.Contains(err.Error(), "Unimplemented") {
			testutil.Skip(t, "containerd 1.6's CRI plugin did not start here: %v (see %s)", err, filepath.Join(env.Dir, "containerd.log"))
		}
		t.Fatalf("CRI PullImage: %v", err)
	}
	t.Logf("CRI pulled %s as %s", ref, resp.ImageRef)
}

func testCRIPullImage(t *testing.T, c harness.Containerd) {
	env := start(t, harness.Options{Containerd: c, CRI: true})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	env.Registry.Reset()

	criPull(t, ctx, env, ref)
	ctx = env.UseNamespace(ctx, "k8s.io")
	img, err := env.Client.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers)
	checkRemote(t, ctx, env, img, true, true, true)
}

// nerdctl: it adds the remote-snapshot labels itself for a snapshotter
// named cvmfs-snapshotter, so a plain `nerdctl pull` on containerd 2 takes
// the layers from CVMFS, and `nerdctl run` starts a container on them.
func TestNerdctl(t *testing.T) {
	nerdctl := toolBinary(t, "nerdctl", "nerdctl")
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	env.Registry.Reset()

	ns := harness.Unique("nerdctl")
	dataRoot := testutil.TempDir(t)
	cmd := func(args ...string) string {
		t.Helper()
		full := append([]string{"--address", env.ContainerdSock, "--namespace", ns, "--data-root", dataRoot,
			"--snapshotter", harness.SnapshotterName, "--insecure-registry", "--cgroup-manager", "cgroupfs"}, args...)
		out, err := exec.CommandContext(ctx, nerdctl, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("nerdctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cmd("pull", "--quiet", ref)
	ctx = env.UseNamespace(ctx, ns)
	img, err := env.Client.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers)
	checkRemote(t, ctx, env, img, true, true, true)
	out := cmd("run", "--rm", "--net", "none", ref, harness.ProbePath, "cat", "/app/file-003")
	if !strings.Contains(out, "read 1 files") {
		t.Errorf("nerdctl run: %q, want the probe's count of one file read", out)
	}
}

// toolBinary returns the program name that make deps installs in
// <tools>/<dir>/bin, or skips the test without it.
func toolBinary(t *testing.T, dir, name string) string {
	t.Helper()
	ctr, err := harness.Containerd2Tool("ctr")
	if err != nil {
		testutil.Skip(t, "needs the tools directory: %v", err)
	}
	p := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(ctr))), dir, "bin", name)
	if _, err := os.Stat(p); err != nil {
		testutil.Skip(t, "needs %s (make deps installs it): %v", name, err)
	}
	return p
}
