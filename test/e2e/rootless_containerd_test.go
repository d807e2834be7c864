package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/treediff"
)

// TestRootlessContainerd is a rootless node end to end: containerd 2 runs
// as an unprivileged user under rootlesskit (--net=host), configured with
// the shipped deploy/containerd/config-v3.toml; the daemon runs as the same
// user outside it. An image whose layers are in the repository is pulled
// remotely (no layer fetched from the registry) and run, with no cgroup
// (hybrid cgroups without systemd: rootless runc may not create one), and
// its rootfs equals that of the same image unpacked by containerd's own
// overlayfs snapshotter in the same rootless containerd, for each image of
// the corpus that containerd itself can unpack rootless.
func TestRootlessContainerd(t *testing.T) {
	if testutil.UnitOnly() {
		t.Skip("CVMFS_UNIT_ONLY is set")
	}
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	testutil.RequiresBinary(t, "fusermount3")
	testutil.RequiresBinary(t, "newuidmap")
	testutil.RequiresBinary(t, "runc")
	setpriv := testutil.RequiresBinary(t, "setpriv")
	rootlesskit := toolBinary(t, "rootlesskit", "rootlesskit")
	if err := harness.Containerd2Available(); err != nil {
		testutil.Skip(t, "needs containerd 2: %v", err)
	}
	uid, gid, repo, state := rootlessDirs(t)
	ensureSubIDs(t, rootlessUser)
	// rootlesskit's mount namespace receives the daemon's FUSE mounts only
	// from a shared mount (as / is on a systemd host; here it is private).
	sharedMount(t, filepath.Dir(state))
	ctx := testContext(t)

	reg := testutil.StartRegistry()
	defer reg.Close()
	sock := filepath.Join(state, "snapshotter.sock")
	startRootlessDaemon(t, uid, gid, state, repo, sock, "reads") // the default
	client := startRootlessContainerd(t, ctx, setpriv, rootlesskit, uid, gid, state, sock)
	env := &harness.Env{Dir: state, Client: client, Registry: reg}

	for _, fx := range harness.Corpus(1 << 20) {
		// containerd's own unpack of it fails rootless (owners outside
		// the user's 65536 ids, device nodes): nothing to compare with.
		if fx.Name == "special" {
			continue
		}
		t.Run(fx.Name, func(t *testing.T) {
			testRootlessRootfs(t, ctx, env, state, repo, fx)
		})
	}
}

// testRootlessRootfs pulls fx (on the base layer) natively and remotely
// into the rootless containerd of env and compares the rootfs each gives a
// container.
func testRootlessRootfs(t *testing.T, ctx context.Context, env *harness.Env, state, repo string, fx harness.Fixture) {
	img, err := harness.Image(append([][]byte{base(t)}, fx.Layers...)...)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := env.Registry.Push("rootless-"+fx.Name, "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := harness.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	ingestOpen(t, ctx, ref, repo)
	nctx := namespaces.WithNamespace(ctx, harness.Unique("rootless"))
	native, err := env.Pull(nctx, ref, harness.PullOptions{Snapshotter: "overlayfs", NoLabels: true})
	if err != nil {
		t.Fatal(err)
	}
	env.Registry.Reset()
	viaCVMFS, err := env.Pull(nctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkServed(t, env, layers)
	states, err := env.Layers(nctx, viaCVMFS, harness.SnapshotterName)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range states {
		if !st.Remote {
			t.Errorf("layer %d (%s) is not a remote snapshot", i, st.Digest)
		}
	}
	want, err := treediff.Parse(runRootless(t, nctx, env.Client, state, native, "overlayfs", "walk", "/"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := treediff.Parse(runRootless(t, nctx, env.Client, state, viaCVMFS, harness.SnapshotterName, "walk", "/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d entries through overlayfs, %d through CVMFS", len(want), len(got))
	for _, d := range treediff.Diff(want, got) {
		// DUCC turns hardlinks into copies (TestRootfsEqualsOverlayfs).
		if treediff.IsDUCCLoss(d) && d.Field == "nlink" && fx.Name == "links" {
			t.Logf("DUCC loss (expected): %s", d)
			continue
		}
		t.Errorf("rootfs differs: %s", d)
	}
	if e, ok := got[harness.ProbePath]; !ok || e.UID != 0 {
		t.Errorf("%s: %+v, want it owned by root in the container", harness.ProbePath, e)
	}
	if fx.Name == "deletions" {
		for _, p := range []string{"/a/sub", "/opq/old1", "/gone/y"} {
			if _, ok := got[p]; ok {
				t.Errorf("%s survived its deletion", p)
			}
		}
	}
}

// runRootless runs the probe with args in a container from img on the
// rootless containerd and returns its output. The shim runs as the user,
// so output goes to a file of the user's, not to FIFOs of the test's; the
// container has no cgroup and no resource limits.
func runRootless(t *testing.T, ctx context.Context, client *containerd.Client, state string, img containerd.Image, sn string, args ...string) string {
	t.Helper()
	id := harness.Unique("rootless")
	noCgroup := func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		s.Linux.CgroupsPath = ""
		s.Linux.Resources = nil
		return nil
	}
	c, err := client.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithSnapshotter(sn),
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(append([]string{harness.ProbePath}, args...)...), noCgroup),
	)
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	defer c.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup)
	out := filepath.Join(state, id+".out")
	task, err := c.NewTask(ctx, cio.LogFile(out))
	if err != nil {
		t.Fatalf("create task: %v", err)
	}
	defer task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
	exit, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatalf("start task: %v", err)
	}
	status := <-exit
	code, _, err := status.Result()
	b, _ := os.ReadFile(out)
	if err != nil || code != 0 {
		t.Fatalf("container %v on %s: exit %d, %v\n%s", args, sn, code, err, b)
	}
	// stdout and stderr share the file: keep the walk's JSON lines.
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "{") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// startRootlessContainerd starts containerd 2 as uid:gid under rootlesskit
// with the shipped config-v3.toml (the daemon's socket templated) and
// returns a client; it is stopped when t ends.
func startRootlessContainerd(t *testing.T, ctx context.Context, setpriv, rootlesskit string, uid, gid int, state, snapshotterSock string) *containerd.Client {
	t.Helper()
	// containerd finds the shim on PATH, next to itself.
	src, err := harness.Containerd2Tool("containerd")
	if err != nil {
		t.Fatal(err)
	}
	shim, err := harness.Containerd2Tool("containerd-shim-runc-v2")
	if err != nil {
		t.Fatal(err)
	}
	bin := userCopy(t, state, src)
	userCopy(t, state, shim)
	rootlesskit = userCopy(t, state, rootlesskit)
	dir := filepath.Join(state, "containerd")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	cfg, _ := deployConfigs(t, harness.Containerd2, "config-v3.toml", "config.toml")
	keys, _ := harness.ContainerdLocalConfig(harness.Containerd2, false)
	// The CRI plugin stays off: it needs more than a rootless node here has.
	cfg = keys + cfg[strings.Index(cfg, "\nversion = 3\n")+1:]
	cfg = strings.NewReplacer("$T", dir, "$SNAP", snapshotterSock).Replace(cfg)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Inside rootlesskit's namespaces /run is a copy: containerd's
	// /run/containerd (shim sockets) must be its own, not the host's.
	script := fmt.Sprintf("rm -f /run/containerd && mkdir -p /run/containerd && exec %s --config %s", bin, cfgPath)
	cmd := exec.Command(setpriv, "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups",
		rootlesskit, "--net=host", "--copy-up=/run", "--propagation=rslave", "--state-dir", filepath.Join(dir, "rootlesskit"),
		"sh", "-c", script)
	cmd.Env = []string{"PATH=" + filepath.Dir(bin) + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, "XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg")}
	sock := filepath.Join(dir, "containerd.sock")
	var client *containerd.Client
	startLogged(t, "rootless containerd", cmd, filepath.Join(dir, "containerd.log"), false, func() bool {
		if _, err := os.Stat(sock); err != nil {
			return false
		}
		c, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
		if err != nil {
			return false
		}
		if _, err := c.Version(ctx); err != nil {
			c.Close()
			return false
		}
		client = c
		return true
	})
	t.Cleanup(func() { client.Close() })
	return client
}

// ensureSubIDs gives name a range of subordinate uids and gids (for
// rootlesskit's newuidmap) unless it has one.
func ensureSubIDs(t *testing.T, name string) {
	t.Helper()
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, name+":") {
				return
			}
		}
	}
	usermod := testutil.RequiresBinary(t, "usermod")
	if out, err := exec.Command(usermod, "--add-subuids", "200000-265535", "--add-subgids", "200000-265535", name).CombinedOutput(); err != nil {
		t.Fatalf("usermod --add-subuids: %v\n%s", err, out)
	}
}

// sharedMount bind-mounts dir on itself as a shared mount, so that mounts
// made below it reach mount namespaces copied from it later. The test's
// mount sweep removes it.
func sharedMount(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s: %v", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		t.Fatalf("make %s shared: %v", dir, err)
	}
}
