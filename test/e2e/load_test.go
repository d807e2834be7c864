package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

const (
	// loadImages images share a base and a middle layer; each has a top
	// layer of its own. Every image is pulled in each of loadNamespaces.
	loadImages     = 4
	loadNamespaces = 2
	// loadRestarts restarts of the daemon during the pulls; every
	// loadSigtermEvery-th one (from the 4th) is a SIGTERM, the rest kill -9.
	loadRestarts     = 20
	loadSigtermEvery = 7
	// pullAttempts bounds the attempts of one pull; pullTimeout bounds
	// one attempt (a longer one means something hangs).
	pullAttempts = 60
	pullTimeout  = time.Minute
)

// 8 concurrent pulls (4 images sharing layers, in two
// namespaces), repeated (pull, remove, pull again) while the daemon is
// killed and restarted 20 times. Pulls that fail while the daemon is down
// are retried, bounded. Afterwards every committed snapshot is intact
// (walked over the daemon's socket), every image has its remote layers and
// runs, and teardown leaves no mount. The figures are logged as
// "load: mode=... restarts=... kills=... pulls=... retries=...".
//
// In both mount modes: a killed daemon leaves dead FUSE mounts behind, but
// live bind mounts.
func TestLoad(t *testing.T) {
	for _, mode := range []string{"fuse", "bind"} {
		t.Run(mode, func(t *testing.T) { testLoad(t, mode) })
	}
}

func testLoad(t *testing.T, mode string) {
	env := start(t, harness.Options{MountMode: mode})
	// Runs before start's teardown: the logs are still there.
	t.Cleanup(func() {
		if t.Failed() {
			keepLogs(t, env.Dir)
		}
	})
	ctx := testContext(t)

	// The files each layer holds, to check snapshots and containers by.
	layerFile := map[digest.Digest]string{}
	mid := testutil.MustLayer(testutil.Dir("mid"), testutil.File("mid/shared", "the shared middle layer\n"))
	refs := make([]string, loadImages)
	tops := make([]string, loadImages)
	ingested := map[digest.Digest]bool{}
	for i := range loadImages {
		tops[i] = fmt.Sprintf("top/image-%d", i)
		top := testutil.MustLayer(testutil.Dir("top"), testutil.File(tops[i], fmt.Sprintf("top layer of image %d\n", i)))
		var ds []digest.Digest
		refs[i], ds = push(t, env, fmt.Sprintf("load-%d", i), base(t), mid, top)
		layerFile[ds[0]], layerFile[ds[1]], layerFile[ds[2]] = "etc/os-release", "mid/shared", tops[i]
		// The last image's top layer is not in the repository: it is
		// pulled, the rest of it comes from CVMFS.
		if i < loadImages-1 {
			ingest(t, ctx, env, refs[i])
			for _, d := range ds {
				ingested[d] = true
			}
		}
	}
	nss := make([]context.Context, loadNamespaces)
	for j := range nss {
		nss[j] = env.Namespace(ctx, fmt.Sprintf("load%d", j))
	}

	// The pullers: each pulls its image, removes it, and pulls it again
	// until the restarts are over; its last pull starts after them.
	var (
		stormOver                     atomic.Bool
		pulls, retries, removes, hung atomic.Int64
		errMu                         sync.Mutex
		errSeen                       = map[string]int{}
	)
	noteErr := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		errSeen[errClass(err)]++
	}
	final := make([][]containerd.Image, loadNamespaces)
	for j := range final {
		final[j] = make([]containerd.Image, loadImages)
	}
	var wg sync.WaitGroup
	for j, nctx := range nss {
		for i, ref := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					last := stormOver.Load()
					img, err := pullRetry(nctx, env, ref, func(err error, timedOut bool) {
						retries.Add(1)
						if timedOut {
							hung.Add(1)
						}
						noteErr(err)
					})
					if err != nil {
						t.Errorf("ns %d: %v", j, err)
						return
					}
					pulls.Add(1)
					if last {
						final[j][i] = img
						return
					}
					if err := env.Client.ImageService().Delete(nctx, ref, images.SynchronousDelete()); err != nil {
						noteErr(fmt.Errorf("remove: %w", err))
					} else {
						removes.Add(1)
					}
				}
			}()
		}
	}

	// The restarts, while the pulls run.
	var kills, sigterms, stuck int
	var downtime, longest time.Duration
	for r := range loadRestarts {
		time.Sleep(time.Duration(300+rand.IntN(900)) * time.Millisecond)
		kind := harness.Kill
		if r%loadSigtermEvery == 3 {
			kind = harness.Graceful
			sigterms++
		} else {
			kills++
		}
		d, err := env.RestartSnapshotter(ctx, kind)
		if errors.Is(err, harness.ErrStuck) && dials(env.SnapshotterSock) {
			// A deadlock in the daemon (see harness.ErrStuck): a failure,
			// but the harness freed it and restarted, so go on measuring.
			stuck++
			t.Errorf("restart %d (%s): %v", r+1, kind, err)
			err = nil
		}
		if err != nil {
			stormOver.Store(true)
			wg.Wait()
			t.Fatalf("restart %d (%s): %v", r+1, kind, err)
		}
		downtime += d
		longest = max(longest, d)
	}
	stormOver.Store(true)
	wg.Wait()

	errMu.Lock()
	classes := make([]string, 0, len(errSeen))
	for c, n := range errSeen {
		classes = append(classes, fmt.Sprintf("%q*%d", c, n))
	}
	errMu.Unlock()
	slices.Sort(classes)
	t.Logf("load: mode=%s restarts=%d kills=%d sigterms=%d stuck=%d pulls=%d retries=%d removes=%d hung=%d downtime=%s longest_down=%s",
		mode, loadRestarts, kills, sigterms, stuck, pulls.Load(), retries.Load(), removes.Load(), hung.Load(),
		downtime.Round(time.Millisecond), longest.Round(time.Millisecond))
	t.Logf("load: failed attempts by error:\n%s", strings.Join(classes, "\n"))
	if t.Failed() {
		t.FailNow()
	}
	if hung.Load() > 0 {
		t.Errorf("%d pull attempts ran past %s", hung.Load(), pullTimeout)
	}

	// Every FUSE mount under the daemon's root answers, none is stacked on
	// another (a dead mount re-mounted without detaching it first).
	checkLiveMounts(t, env)

	// Every committed snapshot is intact: walked over the daemon's own
	// socket, each one's files are where they should be.
	committed, remote := checkSnapshots(t, ctx, env, layerFile, ingested)

	// Every image has its ingested layers as remote snapshots and runs.
	ran := 0
	for j, nctx := range nss {
		for i, img := range final[j] {
			states, err := env.Layers(nctx, img, harness.SnapshotterName)
			if err != nil {
				t.Errorf("ns %d image %d: %v", j, i, err)
				continue
			}
			for k, st := range states {
				if st.Remote != ingested[st.Digest] {
					t.Errorf("ns %d image %d layer %d (%s): remote = %v, want %v", j, i, k, st.Digest, st.Remote, ingested[st.Digest])
				}
			}
			res, err := env.Run(nctx, img, harness.RunOptions{}, harness.ProbePath, "cat", "/etc/os-release", "/mid/shared", "/"+tops[i])
			if err != nil || !strings.Contains(res.Stdout, "read 3 files") {
				t.Errorf("ns %d image %d: run: %v (stdout %q, stderr %q)", j, i, err, res.Stdout, res.Stderr)
				continue
			}
			ran++
		}
	}
	restored := strings.Count(env.SnapshotterLog(), "restored remote layer")
	kept := strings.Count(env.SnapshotterLog(), "remote layer still mounted, kept")

	left, err := env.Close(context.Background())
	if err != nil {
		t.Errorf("teardown: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("mounts left under %s after teardown: %v", env.Dir, left)
	}
	t.Logf("load: mode=%s committed=%d remote=%d images_ran=%d/%d restored_mounts=%d kept_mounts=%d leaked_mounts=%d",
		mode, committed, remote, ran, loadImages*loadNamespaces, restored, kept, len(left))
}

// keepLogs copies the daemons' logs out of dir, which the test removes, and
// says where to.
func keepLogs(t *testing.T, dir string) {
	keep, err := os.MkdirTemp("", strings.ReplaceAll(t.Name(), "/", "-")+"-logs-")
	if err != nil {
		t.Log(err)
		return
	}
	for _, name := range []string{"snapshotter.log", "containerd.log"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			_ = os.WriteFile(filepath.Join(keep, name), b, 0o644)
		}
	}
	t.Logf("logs kept in %s", keep)
}

// dials reports whether something accepts connections on the unix socket.
func dials(sock string) bool {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// pullRetry pulls ref, retrying a failed attempt (after 250 ms) up to
// pullAttempts times; retry is told about each failed attempt but the
// last, and whether it ran out of pullTimeout.
func pullRetry(ctx context.Context, env *harness.Env, ref string, retry func(err error, timedOut bool)) (containerd.Image, error) {
	var err error
	for a := range pullAttempts {
		actx, cancel := context.WithTimeout(ctx, pullTimeout)
		var img containerd.Image
		img, err = env.Pull(actx, ref, harness.PullOptions{})
		timedOut := actx.Err() != nil
		cancel()
		if err == nil {
			return img, nil
		}
		if ctx.Err() != nil {
			break
		}
		if a < pullAttempts-1 {
			retry(err, timedOut)
			time.Sleep(250 * time.Millisecond)
		}
	}
	return nil, fmt.Errorf("pull %s: still failing after %d attempts: %w", ref, pullAttempts, err)
}

// errClass shortens a failed attempt's error to what tells failures
// apart: without the pull's prefix, keys, digests and paths.
func errClass(err error) string {
	s := err.Error()
	if _, rest, ok := strings.Cut(s, "into "+harness.SnapshotterName+": "); ok {
		s = rest
	}
	s = errNoise.ReplaceAllString(s, "…")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// errNoise matches what differs between errors of the same kind.
var errNoise = regexp.MustCompile(`sha256:[0-9a-f]{64}|extract-[0-9]+-[A-Za-z0-9_-]+|/tmp/[^ :"]+|127\.0\.0\.1:[0-9]+|[0-9]{3,}`)

// checkLiveMounts fails t if a FUSE mount under the daemon's root is dead
// or two mounts share a mountpoint.
func checkLiveMounts(t *testing.T, env *harness.Env) {
	t.Helper()
	ms, err := mountutil.Under(filepath.Join(env.Dir, "snapshotter"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range ms {
		seen[m.Mountpoint]++
		if !strings.HasPrefix(m.FSType, "fuse") {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Mountpoint, &st); err != nil {
			t.Errorf("FUSE mount %s after the restarts: %v", m.Mountpoint, err)
		}
	}
	for mp, n := range seen {
		if n > 1 {
			t.Errorf("%d mounts stacked at %s", n, mp)
		}
	}
}

// checkSnapshots walks every snapshot the daemon holds, over its socket,
// and checks each committed one through a read-only view: the layer's file
// is there, and a snapshot is remote exactly when its layer was ingested.
// It returns how many committed and remote snapshots it checked.
func checkSnapshots(t *testing.T, ctx context.Context, env *harness.Env, layerFile map[digest.Digest]string, ingested map[digest.Digest]bool) (committed, remote int) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+env.SnapshotterSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), harness.SnapshotterName)
	var infos []snapshots.Info
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		infos = append(infos, info)
		return nil
	}); err != nil {
		t.Fatalf("walk the daemon's snapshots: %v", err)
	}
	active := 0
	for _, info := range infos {
		if info.Kind != snapshots.KindCommitted {
			active++
			continue
		}
		committed++
		label := info.Labels[snapshot.LabelRemote]
		if label != "" {
			remote++
		}
		key := harness.Unique("load-check")
		ms, err := sn.View(ctx, key, info.Name)
		if err != nil {
			t.Errorf("view of %s (remote %q): %v", info.Name, label, err)
			continue
		}
		if dir, err := viewedDir(ms); err != nil {
			t.Errorf("view of %s: %v", info.Name, err)
		} else if err := checkLayerDir(dir, label, layerFile, ingested); err != nil {
			t.Errorf("snapshot %s: %v", info.Name, err)
		}
		if err := sn.Remove(ctx, key); err != nil {
			t.Errorf("remove view %s: %v", key, err)
		}
	}
	t.Logf("load: mode=%s snapshots walked=%d committed=%d remote=%d active=%d", env.Options.MountMode, len(infos), committed, remote, active)
	return committed, remote
}

// viewedDir returns the directory of the snapshot a read-only view was
// made of: the bind mount's source for a single layer, else the first
// (topmost) lower dir of the overlay.
func viewedDir(ms []mount.Mount) (string, error) {
	if len(ms) == 1 && ms[0].Type == "bind" {
		return ms[0].Source, nil
	}
	if len(ms) == 1 && ms[0].Type == "overlay" {
		for _, o := range ms[0].Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				dir, _, _ := strings.Cut(v, ":")
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("mounts %+v: want one bind or overlay mount", ms)
}

// checkLayerDir checks the directory of one committed snapshot: a remote
// one holds its layer's file; any other is a layer that was not ingested
// and holds one of the known files.
func checkLayerDir(dir, label string, layerFile map[digest.Digest]string, ingested map[digest.Digest]bool) error {
	if label != "" {
		d, err := digest.Parse(label)
		if err != nil {
			return fmt.Errorf("remote label %q: %v", label, err)
		}
		f, ok := layerFile[d]
		if !ok || !ingested[d] {
			return fmt.Errorf("remote label %s names no ingested layer", d)
		}
		if _, err := os.ReadFile(filepath.Join(dir, f)); err != nil {
			return fmt.Errorf("remote layer %s: %v", d, err)
		}
		return nil
	}
	for d, f := range layerFile {
		if ingested[d] {
			continue
		}
		if _, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("a committed snapshot that is not remote holds no layer that was left out of the repository (%s)", dir)
}
