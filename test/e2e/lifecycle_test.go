package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// 4e: the same image in two namespaces, then removed and pulled again:
// served from CVMFS every time.
func TestNamespacesAndRepull(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	env.Registry.Reset()

	ctx1, ctx2 := env.Namespace(ctx, "ns1"), env.Namespace(ctx, "ns2")
	for _, c := range []context.Context{ctx1, ctx2} {
		img, err := env.Pull(c, ref, harness.PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkRemote(t, c, env, img, true, true, true)
		run(t, c, env, img, harness.RunOptions{}, "cat", "/app/file-001")
	}

	img, err := env.Client.GetImage(ctx1, ref)
	if err != nil {
		t.Fatal(err)
	}
	states, err := env.Layers(ctx1, img, harness.SnapshotterName)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.ImageService().Delete(ctx1, ref, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	top := states[len(states)-1].ChainID.String()
	if _, err := env.Client.SnapshotService(harness.SnapshotterName).Stat(ctx1, top); !errdefs.IsNotFound(err) {
		t.Errorf("after removing the image, its top snapshot in ns1: %v; want it garbage-collected", err)
	}
	// ns2 still has its snapshots, and its containers still run.
	img2, err := env.Client.GetImage(ctx2, ref)
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx2, env, img2, harness.RunOptions{}, "cat", "/lib/file-002")

	img, err = env.Pull(ctx1, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRemote(t, ctx1, env, img, true, true, true)
	run(t, ctx1, env, img, harness.RunOptions{}, "cat", "/app/file-001")
	checkServed(t, env, layers)
}

// 4h: a container that writes to its rootfs: the writes land in its own
// upper directory; the repository is untouched and other containers see
// the image as it was.
func TestWritesStayInUpperDir(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, _ := pushApp(t, env)
	ingest(t, ctx, env, ref)
	before := treeDigest(t, env.RepoDir)

	ctx = env.Namespace(ctx, "writes")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := env.Run(ctx, img, harness.RunOptions{Keep: true}, harness.ProbePath, "write",
		"/app/file-000", "changed", "/new-file", "new", "/lib/new-in-lower-dir", "x")
	if err != nil {
		t.Fatalf("write in container: %v (%s)", err, res.Stderr)
	}
	mounts, err := env.Client.SnapshotService(harness.SnapshotterName).Mounts(ctx, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	upper := ""
	for _, m := range mounts {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				upper = v
			}
		}
	}
	if upper == "" {
		t.Fatalf("no upperdir in the container's mounts %+v", mounts)
	}
	for path, want := range map[string]string{"app/file-000": "changed", "new-file": "new", "lib/new-in-lower-dir": "x"} {
		b, err := os.ReadFile(filepath.Join(upper, path))
		if err != nil || string(b) != want {
			t.Errorf("upper dir %s: %q %v, want %q", path, b, err, want)
		}
	}
	if after := treeDigest(t, env.RepoDir); after != before {
		t.Errorf("the repository changed: digest %s before, %s after", before, after)
	}
	if out := run(t, ctx, env, img, harness.RunOptions{}, "cat", "/app/file-000", "/lib/file-000"); !strings.Contains(out, fmt.Sprint(2*64<<10)) {
		t.Errorf("a fresh container sees %q; want the image's files unchanged", out)
	}
}

// 4i: after teardown no mount remains under the temporary directory, even
// with a container still running when it starts, and both daemons stop on
// SIGTERM alone.
func TestNoMountsAfterTeardown(t *testing.T) {
	env := start(t, harness.Options{})
	ctx := testContext(t)
	ref, _ := pushApp(t, env)
	ingest(t, ctx, env, ref)
	ctx = env.Namespace(ctx, "teardown")
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Start(ctx, img, harness.RunOptions{}, harness.ProbePath, "sleep", "600"); err != nil {
		t.Fatal(err)
	}
	ms, err := mountutil.Under(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	fuse := 0
	for _, m := range ms {
		if strings.HasPrefix(m.FSType, "fuse") {
			fuse++
		}
	}
	if fuse < 3 {
		t.Errorf("%d FUSE mounts under %s while a container runs, want >= 3: %+v", fuse, env.Dir, ms)
	}
	left, err := env.Close(context.Background())
	if err != nil {
		t.Errorf("teardown: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("mounts left after teardown: %v", left)
	}
}

// treeDigest hashes every path, mode, size, mtime and content under dir.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d %d\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
