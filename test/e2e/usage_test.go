package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// The app image's lib and app layers hold 20 files of 64 KiB each.
const (
	appFiles    = 20
	appFileSize = 64 << 10
)

// TestUsageStudy: a workload with a known set of reads gives exact profile
// and report numbers in both "reads" and "open" accounting; they survive a
// graceful restart (no loss, nothing counted twice) and a kill -9 (up to
// the last periodic flush, which the test waits for on disk). The mounts,
// and their live figures, outlive both restarts (taken over by the next
// daemon, or kept by a separate FUSE server): they must not be counted
// twice either.
func TestUsageStudy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     string
		separate bool
	}{{"reads", "reads", false}, {"open", "open", false}, {"open-separate", "open", true}} {
		t.Run(tc.name, func(t *testing.T) { testUsageStudy(t, tc.mode, tc.separate) })
	}
}

func testUsageStudy(t *testing.T, mode string, separate bool) {
	env := start(t, harness.Options{Accounting: mode, ProfileFlushInterval: "1s", SeparateFUSEServer: separate})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	ns := harness.Unique("usage")
	ctx = env.UseNamespace(ctx, ns)
	cvmfsctlPull(t, env, ns, ref)
	img, err := env.Client.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	lib, app := layers[1], layers[2]
	workload := func() {
		t.Helper()
		out := run(t, ctx, env, img, harness.RunOptions{}, "cat", "/lib/file-000", "/app/file-001", "/app/file-002")
		if want := "read 3 files"; !strings.Contains(out, want) {
			t.Fatalf("container output %q, want %q", out, want)
		}
	}
	// check asks the daemon for each layer's profile and the report, and
	// compares them with n runs of the workload.
	check := func(n int64, when string) {
		t.Helper()
		want := map[digest.Digest][]usage.FileAccess{
			lib: {{Path: "lib/file-000", Opens: n, Bytes: n * appFileSize}},
			app: {{Path: "app/file-001", Opens: n, Bytes: n * appFileSize}, {Path: "app/file-002", Opens: n, Bytes: n * appFileSize}},
		}
		var prof []usage.LayerUsage
		cvmfsctlJSON(t, ctx, env, &prof, "profile", ref, "--json")
		got := map[digest.Digest][]usage.FileAccess{}
		for _, l := range prof {
			got[l.Layer] = l.Profile
			if l.Layer == lib || l.Layer == app {
				if l.Accounting.String() != mode || l.Files != int64(len(want[l.Layer])) || l.Opens != n*int64(len(want[l.Layer])) || l.Bytes != n*appFileSize*int64(len(want[l.Layer])) {
					t.Errorf("%s: layer %s: %+v", when, l.Layer, l)
				}
			}
		}
		for _, d := range []digest.Digest{lib, app} {
			if !equalProfiles(got[d], want[d]) {
				t.Errorf("%s: profile of layer %s: %+v, want %+v", when, d, got[d], want[d])
			}
		}
		var rows []usage.ReportRow
		cvmfsctlJSON(t, ctx, env, &rows, "report", ref, "--json")
		if len(rows) != 3 {
			t.Fatalf("%s: report %+v, want 3 layers", when, rows)
		}
		for i, files := range map[int]int64{1: 1, 2: 2} {
			r := rows[i]
			if r.Layer != layers[i] || !r.Served || r.FilesRead != files || r.FilesTotal != appFiles ||
				r.BytesRead != n*files*appFileSize || r.BytesTotal != appFiles*appFileSize || r.Accounting != mode {
				t.Errorf("%s: report row %d: %+v", when, i, r)
			}
		}
	}
	workload()
	check(1, "after one run")
	if _, err := env.RestartSnapshotter(ctx, harness.Graceful); err != nil {
		t.Fatal(err)
	}
	check(1, "after a graceful restart")
	if mode == "reads" {
		// The mount, and its page cache, outlive the restart: "reads"
		// counts a file's content when the daemon serves it, so the
		// second run must find the page cache dropped (as memory
		// pressure would) to be seen at all.
		unix.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			t.Fatal(err)
		}
	}
	workload()
	// Without asking the daemon (which writes its records when asked):
	// wait for the periodic flush to put the second run on disk.
	waitRecord(t, ctx, env, app, "app/file-002", 2)
	if _, err := env.RestartSnapshotter(ctx, harness.Kill); err != nil {
		t.Fatal(err)
	}
	check(2, "after a second run and kill -9")
}

func equalProfiles(a, b []usage.FileAccess) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]usage.FileAccess{}
	for _, f := range a {
		m[f.Path] = f
	}
	for _, f := range b {
		if m[f.Path] != f {
			return false
		}
	}
	return true
}

// cvmfsctlJSON runs a cvmfsctl command against the daemon and decodes its
// JSON output into v.
func cvmfsctlJSON(t *testing.T, ctx context.Context, env *harness.Env, v any, command string, args ...string) {
	t.Helper()
	out, err := env.Cvmfsctl(ctx, command, args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("cvmfsctl %s: %v\n%s", command, err, out)
	}
}

// waitRecord waits until layer's record file on disk counts opens of path
// (its folded sessions and its live one together).
func waitRecord(t *testing.T, ctx context.Context, env *harness.Env, layer digest.Digest, path string, opens int64) {
	t.Helper()
	file := filepath.Join(env.UsageDir(), "profiles", layer.Encoded()+".json")
	for {
		var rec struct {
			Base    struct{ Profile []usage.FileAccess }
			Session *struct{ Profile []usage.FileAccess }
		}
		if b, err := os.ReadFile(file); err == nil && json.Unmarshal(b, &rec) == nil {
			n := int64(0)
			all := rec.Base.Profile
			if rec.Session != nil {
				all = append(all, rec.Session.Profile...)
			}
			for _, f := range all {
				if f.Path == path {
					n += f.Opens
				}
			}
			if n >= opens {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s never recorded %d opens of %s: %v", file, opens, path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestMissingList: the images not fully served are listed exactly, with
// the reason of each layer pulled, most pulled first, and as DUCC wish
// list entries; a fully served image is not listed.
func TestMissingList(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	served, _ := pushApp(t, env)
	ingest(t, ctx, env, served)
	more := harness.AppLayers(2, 1000)
	absent, absentLayers := push(t, env, "absent", append([][]byte{base(t)}, more...)...)
	z, err := testutil.ZstdLayer(testutil.Dir("z"), testutil.File("z/file", "zstd content"))
	if err != nil {
		t.Fatal(err)
	}
	zstd, zstdLayers := push(t, env, "zstd", base(t), z)
	ns := harness.Unique("missing")
	ctx = env.UseNamespace(ctx, ns)
	for _, ref := range []string{served, absent} {
		cvmfsctlPull(t, env, ns, ref)
	}
	bin, err := harness.Binary("cvmfsctl")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, bin, "pull", zstd, "--json", "--address", env.ContainerdSock, "--namespace", ns,
		"--snapshotter", harness.SnapshotterName).Output()
	if err != nil {
		t.Fatalf("cvmfsctl pull --json: %v\n%s", err, out)
	}
	var pulled struct {
		Image  string
		Layers []struct {
			Digest digest.Digest
			From   string
		}
	}
	if err := json.Unmarshal(out, &pulled); err != nil || pulled.Image != zstd || len(pulled.Layers) != 2 ||
		pulled.Layers[0].From != "cvmfs" || pulled.Layers[1].Digest != zstdLayers[1] || pulled.Layers[1].From != "registry" {
		t.Errorf("cvmfsctl pull --json: %+v, %v\n%s", pulled, err, out)
	}
	check := func(when string) {
		t.Helper()
		var missing []usage.ImageUsage
		cvmfsctlJSON(t, ctx, env, &missing, "missing", "--json")
		if len(missing) != 2 || missing[0].Image != absent || missing[1].Image != zstd {
			t.Fatalf("%s: missing %+v, want %s then %s", when, missing, absent, zstd)
		}
		a, zz := missing[0], missing[1]
		// The base layer, unpacked in this namespace already, is answered
		// by containerd itself: the snapshotter sees only the others.
		if a.Pulls != 2 || len(a.Layers) != 2 ||
			a.Layers[0] != (usage.ImageLayer{Layer: absentLayers[1], Reason: "not-in-repository", Pulls: 1, LastSeen: a.Layers[0].LastSeen}) ||
			a.Layers[1].Layer != absentLayers[2] || a.Layers[1].Reason != "not-in-repository" {
			t.Errorf("%s: absent image %+v", when, a)
		}
		if zz.Pulls != 1 || len(zz.Layers) != 1 || zz.Layers[0].Layer != zstdLayers[1] || zz.Layers[0].Reason != "zstd" {
			t.Errorf("%s: zstd image %+v", when, zz)
		}
		out, err := env.Cvmfsctl(ctx, "missing", "--ducc")
		if err != nil {
			t.Fatal(err)
		}
		want := "- 'https://" + strings.TrimSuffix(absent, ":latest") + ":latest'\n- 'https://" + zstd + "'\n"
		if !strings.HasSuffix(string(out), want) {
			t.Errorf("%s: missing --ducc:\n%s\nwant it to end with\n%s", when, out, want)
		}
	}
	check("after the pulls")
	if _, err := env.RestartSnapshotter(ctx, harness.Graceful); err != nil {
		t.Fatal(err)
	}
	check("after a restart")
}
