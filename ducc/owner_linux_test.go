//go:build linux

package ducc_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// claimedRepo writes a repository holding layer, as root owns it; with
// claimed, its .layers and the layer root are chowned to 999:995 as a
// CVMFS client with CVMFS_CLAIM_OWNERSHIP=yes, running as the cvmfs user,
// presents them.
func claimedRepo(t *testing.T, layer digest.Digest, claimed bool) *ducc.Repo {
	t.Helper()
	root := t.TempDir()
	repo := ducc.New(root)
	dir, err := repo.UnpackedDir(layer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if claimed {
		for _, p := range []string{filepath.Join(root, ".layers"), dir} {
			if err := os.Lchown(p, 999, 995); err != nil {
				t.Fatal(err)
			}
		}
	}
	return repo
}

// TestOwnershipClaimedByClient: a layer whose root is not root's is
// refused (PermissionDenied, with the client setting that fixes it), and
// CheckOwnership says so of .layers; root-owned layers are served.
func TestOwnershipClaimedByClient(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	layer := digest.FromString("layer")
	for _, claimed := range []bool{false, true} {
		repo := claimedRepo(t, layer, claimed)
		f, err := repo.OpenLayer(ctx, layer)
		if f != nil {
			f.Close()
		}
		cerr := repo.CheckOwnership(ctx)
		if !claimed {
			if err != nil || cerr != nil {
				t.Errorf("root-owned repository: OpenLayer = %v, CheckOwnership = %v", err, cerr)
			}
			continue
		}
		for what, err := range map[string]error{"OpenLayer": err, "CheckOwnership": cerr} {
			if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "CVMFS_CLAIM_OWNERSHIP=no") || !strings.Contains(err.Error(), "999:995") {
				t.Errorf("%s of a repository owned by the client = %v, want PermissionDenied naming the owner and CVMFS_CLAIM_OWNERSHIP=no", what, err)
			}
		}
		if _, err := repo.DiffID(ctx, layer); !errdefs.IsPermissionDenied(err) {
			t.Errorf("DiffID of a layer owned by the client = %v, want PermissionDenied", err)
		}
	}
}
