package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// rootlessUser is the unprivileged account the rootless tests run the
// daemon as; they create it when it is missing.
const rootlessUser = "cvmfs-rootless"

// TestRootlessDaemon runs the daemon as an unprivileged user over a
// repository written by root: it mounts each layer through fusermount3,
// kernel passthrough is refused (it logs so and serves reads in
// userspace), and an overlay mounted with userxattr inside a user
// namespace (as rootless containerd mounts it) honours the layers'
// whiteouts and opaque directories, with root-owned files owned by root
// inside the namespace.
func TestRootlessDaemon(t *testing.T) {
	if testutil.UnitOnly() {
		t.Skip("CVMFS_UNIT_ONLY is set")
	}
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	testutil.RequiresBinary(t, "fusermount3")
	setpriv := testutil.RequiresBinary(t, "setpriv")
	unshare := testutil.RequiresBinary(t, "unshare")
	uid, gid, repo, state := rootlessDirs(t)
	ctx := testContext(t)
	reg := testutil.StartRegistry()
	defer reg.Close()
	fx := harness.Deletions()
	img, err := harness.Image(fx.Layers...)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := reg.Push("rootless", "latest", img)
	if err != nil {
		t.Fatal(err)
	}
	ingestOpen(t, ctx, ref, repo)

	sock := filepath.Join(state, "snapshotter.sock")
	logPath := startRootlessDaemon(t, uid, gid, state, repo, sock, "open")
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), harness.SnapshotterName)
	ctx = namespaces.WithNamespace(ctx, "rootless")

	// Prepare each layer as containerd's unpack does: all remote.
	layers, err := harness.LayerDigests(img)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []digest.Digest
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, digest.Digest(d.String()))
	}
	chain := identity.ChainIDs(diffIDs)
	parent := ""
	for i, l := range layers {
		labels := map[string]string{
			"containerd.io/snapshot.ref":              chain[i].String(),
			"containerd.io/snapshot/cri.layer-digest": l.String(),
		}
		_, err := sn.Prepare(ctx, fmt.Sprintf("extract-%d %s", i, chain[i]), parent, snapshots.WithLabels(labels))
		if !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare layer %d (%s): %v, want AlreadyExists (remote)\n%s", i, l, err, readLog(logPath))
		}
		parent = chain[i].String()
	}
	log := readLog(logPath)
	if !strings.Contains(log, "FUSE passthrough not granted, serving reads in userspace") {
		t.Errorf("the daemon did not log that passthrough is unavailable:\n%s", log)
	}
	// fusermount3 mounted them on the user's behalf: user_id=<uid>.
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(state))
	if err != nil {
		t.Fatal(err)
	}
	fuseMounts := 0
	for _, m := range ms {
		if strings.HasPrefix(m.FSType, "fuse") {
			fuseMounts++
			if !strings.Contains(","+m.VFSOptions+",", fmt.Sprintf(",user_id=%d,", uid)) {
				t.Errorf("FUSE mount %s has options %q, want user_id=%d (fusermount3)", m.Mountpoint, m.VFSOptions, uid)
			}
		}
	}
	if fuseMounts != len(layers) {
		t.Errorf("%d FUSE mounts under %s, want %d", fuseMounts, state, len(layers))
	}

	mounts, err := sn.View(ctx, "rootless-view", parent)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if len(mounts) != 1 || mounts[0].Type != "overlay" || !slices.Contains(mounts[0].Options, "userxattr") {
		t.Fatalf("View mounts %+v, want one overlay with userxattr", mounts)
	}
	merged := filepath.Join(state, "merged")
	if err := os.Mkdir(merged, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(merged, uid, gid); err != nil {
		t.Fatal(err)
	}
	// Inside a user namespace of the user's (its uid mapped to 0) with a
	// mount namespace of its own, as rootless containerd runs.
	script := `set -e
mount -t overlay overlay -o "$1" "$2"
cd "$2"
find . -mindepth 1 -printf '%U:%G %y %p\n'
printf 'content %s\n' "$(cat a/keep)"`
	cmd := exec.CommandContext(ctx, setpriv, "--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups",
		unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", strings.Join(mounts[0].Options, ","), merged)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("overlay in a user namespace: %v\n%s", err, out)
	}
	t.Logf("the rootfs in the user namespace:\n%s", out)
	checkRootlessTree(t, string(out))
	if err := sn.Remove(ctx, "rootless-view"); err != nil {
		t.Errorf("Remove view: %v", err)
	}
}

// rootlessDirs prepares a rootless run: the user (created if missing),
// /dev/fuse open to it and user_allow_other for the test; a root-owned
// repository directory it can read and a state directory of its own.
func rootlessDirs(t *testing.T) (uid, gid int, repo, state string) {
	t.Helper()
	uid, gid = ensureUser(t, rootlessUser)
	fuseForEveryone(t)
	userAllowOther(t)
	dir := testutil.TempDir(t)
	// t.TempDir's parent is 0700 too.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	repo, state = filepath.Join(dir, "repo"), filepath.Join(dir, "state")
	for _, d := range []string{repo, state} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(state, uid, gid); err != nil {
		t.Fatal(err)
	}
	return uid, gid, repo, state
}

// ingestOpen writes ref into repo with cvmfsctl ingest (as root) and opens
// the store to every user, as a CVMFS repository is (ingest keeps its
// store private, 0700). Layers being served stay readable meanwhile to
// whoever already holds them open.
func ingestOpen(t *testing.T, ctx context.Context, ref, repo string) {
	t.Helper()
	cvmfsctl, err := harness.Binary("cvmfsctl")
	if err != nil {
		t.Fatal(err)
	}
	// ingest refuses a store other users reach: close it while it writes.
	if err := os.Chmod(filepath.Join(repo, ".layers"), 0o700); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, cvmfsctl, "ingest", ref, "--repo", repo, "--insecure").CombinedOutput(); err != nil {
		t.Fatalf("cvmfsctl ingest: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Join(repo, ".layers"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// checkRootlessTree checks find's listing of the deletions fixture.
func checkRootlessTree(t *testing.T, out string) {
	t.Helper()
	entries := map[string]string{} // path -> "uid:gid type"
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if c, ok := strings.CutPrefix(line, "content "); ok {
			if c != "keep" {
				t.Errorf("a/keep reads %q, want keep", c)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Errorf("unexpected line %q", line)
			continue
		}
		entries[strings.TrimPrefix(f[2], "./")] = f[0] + " " + f[1]
	}
	for _, p := range []string{"a/sub", "a/sub/x", "opq/old1", "opq/old2", "opq/fresh", "gone/y", "dir-then-file/child"} {
		if e, ok := entries[p]; ok {
			t.Errorf("%s survived its deletion (%s)", p, e)
		}
	}
	for p, typ := range map[string]string{"a/keep": "f", "a/del": "f", "a/new": "f", "opq/again": "d", "gone/back": "f", "file-then-dir/in": "f", "dir-then-file": "f"} {
		e, ok := entries[p]
		if !ok {
			t.Errorf("%s is missing", p)
			continue
		}
		if e != "0:0 "+typ {
			t.Errorf("%s is %q, want owned by root (0:0) and of type %s", p, e, typ)
		}
	}
	for p, e := range entries {
		if strings.HasSuffix(e, " c") {
			t.Errorf("%s: a whiteout shows as a character device", p)
		}
	}
}

// startRootlessDaemon starts the daemon as uid:gid with its root under
// state, serving repo in that accounting mode ("open" requests
// passthrough) with userxattr overlays, and returns its log's path. It is stopped when t
// ends.
func startRootlessDaemon(t *testing.T, uid, gid int, state, repo, sock, accounting string) string {
	t.Helper()
	built, err := harness.Binary("cvmfs-snapshotter")
	if err != nil {
		t.Fatal(err)
	}
	bin := userCopy(t, state, built)
	cfg := filepath.Join(state, "config.toml")
	text := fmt.Sprintf("repository = \"rootless.local\"\nabsolute-mountpoint = %q\naccounting = %q\noverlay-userxattr = \"on\"\n", repo, accounting)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(state, "snapshotter.log")
	cmd := exec.Command(bin, "--root", filepath.Join(state, "root"), "--address", sock, "--config", cfg, "--log-level", "debug")
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + state}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	// Runs after the daemon stopped (cleanups run last first).
	t.Cleanup(func() {
		if ms, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(state)); len(ms) > 0 {
			t.Errorf("%d mounts left under %s after the daemon stopped", len(ms), state)
		}
	})
	startLogged(t, "the rootless daemon", cmd, logPath, true, func() bool {
		_, err := os.Stat(sock)
		return err == nil
	})
	return logPath
}

// startLogged starts cmd in its own process group (SIGTERM if the test
// process dies) with its output in logPath, and waits until ready says
// so; it fails t if cmd exits first or is not ready within 30 s. When t
// ends, cmd gets SIGTERM and 20 s to exit before its group is killed;
// with strict, an exit status other than 0 then fails t.
func startLogged(t *testing.T, name string, cmd *exec.Cmd, logPath string, strict bool, ready func() bool) {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid, cmd.SysProcAttr.Pdeathsig = true, syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil && strict {
				t.Errorf("%s exited after SIGTERM: %v\n%s", name, err, readLog(logPath))
			}
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
			t.Errorf("%s did not stop within 20s of SIGTERM", name)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, readLog(logPath))
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !ready(); time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("%s exited: %v", name, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not ready after 30s", name)
		}
	}
}

// userCopy copies the executable src into dir/bin (created 0755) and
// returns the copy: the user may not reach the checkout or the tools
// directory (a clone under /root, say).
func userCopy(t *testing.T, dir, src string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(bin, filepath.Base(src))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// ensureUser returns the ids of the account name, creating it (a system
// account with no home and no shell) if it is missing; an account it
// created is removed again (with its subordinate ids) when the test ends.
func ensureUser(t *testing.T, name string) (uid, gid int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			t.Fatal(err)
		}
		useradd := testutil.RequiresBinary(t, "useradd")
		userdel := testutil.RequiresBinary(t, "userdel")
		if out, err := exec.Command(useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd %s: %v\n%s", name, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command(userdel, name).CombinedOutput(); err != nil {
				t.Errorf("userdel %s: %v\n%s", name, err, out)
			}
		})
		if u, err = user.Lookup(name); err != nil {
			t.Fatal(err)
		}
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		t.Fatal(err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	return uid, gid
}

// fuseForEveryone makes /dev/fuse readable and writable by every user (as
// on a usual host; it is 0600 on these machines) for the test, and
// restores its mode afterwards.
func fuseForEveryone(t *testing.T) {
	t.Helper()
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatal(err)
	}
	mode := st.Mode().Perm()
	if mode&0o006 == 0o006 {
		return
	}
	if err := os.Chmod("/dev/fuse", mode|0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chmod("/dev/fuse", mode); err != nil {
			t.Errorf("restore the mode of /dev/fuse: %v", err)
		}
	})
}

// userAllowOther adds user_allow_other to /etc/fuse.conf for the test
// (fusermount3 refuses allow_other to users without it; the daemon's
// mounts need it so that every uid of a container can read them), and
// restores the file afterwards.
func userAllowOther(t *testing.T) {
	t.Helper()
	const conf = "/etc/fuse.conf"
	old, err := os.ReadFile(conf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(old), "\n") {
		if strings.TrimSpace(l) == "user_allow_other" {
			return
		}
	}
	text := string(old)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	if err := os.WriteFile(conf, []byte(text+"user_allow_other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if old == nil {
			err = os.Remove(conf)
		} else {
			err = os.WriteFile(conf, old, 0o644)
		}
		if err != nil {
			t.Errorf("restore %s: %v", conf, err)
		}
	})
}

// readLog returns a log file's content.
func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
