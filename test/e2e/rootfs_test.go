package e2e

import (
	"strings"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/treediff"
)

// 4d: for each image of the corpus (deletions and opaque directories, deep
// trees, odd names, a large sparse file, links, special files) the rootfs a
// container sees through CVMFS equals, by a tree diff, the rootfs of the
// same image unpacked by containerd into its overlayfs snapshotter. Only
// the losses DUCC itself causes may differ; the test lists them.
//
// It runs on containerd 2 with each accounting mode ("reads", the default:
// no OPEN, content served by the daemon; "open": reads through kernel
// passthrough; "bytes": every open, reads through the daemon) and on
// containerd 1.6; and, in the default and "open" modes, with the
// repository behind a CVMFS-like store (a FUSE mount behaving like a
// cvmfs2 client that presents owners as published) instead of a
// directory.
func TestRootfsEqualsOverlayfs(t *testing.T) {
	for _, tc := range []struct {
		name       string
		containerd harness.Containerd
		accounting string
		cvmfsLike  bool
	}{
		{"reads", harness.Containerd2, "", false}, // the default accounting
		{"open", harness.Containerd2, "open", false},
		{"bytes", harness.Containerd2, "bytes", false},
		{"containerd-1.6", harness.Containerd16, "open", false},
		{"cvmfs-like-reads", harness.Containerd2, "", true},
		{"cvmfs-like-open", harness.Containerd2, "open", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testRootfsEqualsOverlayfs(t, harness.Options{Containerd: tc.containerd, Accounting: tc.accounting, CVMFSLike: tc.cvmfsLike})
		})
	}
}

func testRootfsEqualsOverlayfs(t *testing.T, o harness.Options) {
	env := start(t, o)
	// The losses the corpus is built to show, and nothing else.
	wantLosses := map[string]string{
		"/s/xattr":       "xattrs",
		"/l/target":      "nlink",
		"/l/hard":        "nlink",
		"/l/other/hard2": "nlink",
	}
	for _, fx := range harness.Corpus(sparseSize) {
		t.Run(fx.Name, func(t *testing.T) {
			ctx := testContext(t)
			ref, layers := push(t, env, fx.Name, append([][]byte{base(t)}, fx.Layers...)...)
			ingest(t, ctx, env, ref)

			nctx := env.Namespace(ctx, "native")
			native, err := env.Pull(nctx, ref, harness.PullOptions{Snapshotter: "overlayfs", NoLabels: true})
			if err != nil {
				t.Fatal(err)
			}
			cctx := env.Namespace(ctx, "cvmfs")
			viaCVMFS, err := env.Pull(cctx, ref, harness.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			remote := make([]bool, len(layers))
			for i := range remote {
				remote[i] = true
			}
			checkRemote(t, cctx, env, viaCVMFS, remote...)

			want, err := treediff.Parse(run(t, nctx, env, native, harness.RunOptions{Snapshotter: "overlayfs"}, "walk", "/"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := treediff.Parse(run(t, cctx, env, viaCVMFS, harness.RunOptions{}, "walk", "/"))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d entries through overlayfs, %d through CVMFS", len(want), len(got))
			mtimeLosses := 0
			defer func() {
				if mtimeLosses > 0 {
					t.Logf("CVMFS loss (expected): sub-second mtime of %d entries", mtimeLosses)
				}
			}()
			for _, d := range treediff.Diff(want, got) {
				if treediff.IsDUCCLoss(d) && wantLosses[d.Path] == d.Field {
					t.Logf("DUCC loss (expected): %s", d)
					continue
				}
				if o.CVMFSLike && treediff.IsCVMFSMtimeLoss(d) {
					mtimeLosses++
					continue
				}
				t.Errorf("rootfs differs: %s", d)
			}
			for p, field := range wantLosses {
				if w, ok := want[p]; ok && field == "nlink" && w.Nlink < 2 {
					t.Errorf("%s: overlayfs shows nlink %d; the corpus meant it as a hardlink", p, w.Nlink)
				}
			}
			if fx.Name == "deletions" {
				// The diff is only as good as the reference: make sure
				// the deletions did happen.
				for _, p := range []string{"/a/sub", "/a/sub/x", "/opq/old1", "/opq/old2", "/opq/fresh", "/gone/y", "/dir-then-file/child"} {
					if _, ok := got[p]; ok {
						t.Errorf("%s survived its deletion", p)
					}
				}
				for p, typ := range map[string]string{"/a/del": "file", "/opq/again": "dir", "/gone/back": "file", "/file-then-dir": "dir", "/dir-then-file": "file"} {
					if got[p].Type != typ {
						t.Errorf("%s is %q, want %s", p, got[p].Type, typ)
					}
				}
			}
			if strings.Contains(fx.Name, "sparse") {
				if e := got["/data/sparse.img"]; e.Size != sparseSize {
					t.Errorf("sparse file size %d, want %d", e.Size, sparseSize)
				}
			}
		})
	}
}
