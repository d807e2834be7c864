//go:build linux

package cvmfslike

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestLayerFSStacksOnStore: as on a real client, our layer filesystem
// mounts a layer of the store (stack depth 1, passthrough granted in
// "open" accounting since the store uses none), and overlayfs stacks on
// that (depth 2). The store presents owners as stored (a client with
// CVMFS_CLAIM_OWNERSHIP=no; one that claims them is refused, see ducc).
func TestLayerFSStacksOnStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		acct usage.Accounting
	}{
		{"open", usage.AccountOpen},
		{"bytes", usage.AccountBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mgr, tmp, lmnt, _ := layerOverStore(t, tc.acct)
			st, _ := mgr.Stats()
			if len(st) != 1 {
				t.Fatalf("stats %+v", st)
			}
			if want := tc.acct == usage.AccountOpen; st[0].Passthrough != want {
				t.Errorf("passthrough %v over the store, want %v", st[0].Passthrough, want)
			}
			var fi unix.Stat_t
			if err := unix.Stat(filepath.Join(lmnt, "etc/hello"), &fi); err != nil {
				t.Fatal(err)
			}
			t.Logf("through our layer filesystem: etc/hello owned by %d:%d", fi.Uid, fi.Gid)
			if fi.Uid != 0 || fi.Gid != 0 {
				t.Errorf("etc/hello owned by %d:%d through our layer, want root's as stored", fi.Uid, fi.Gid)
			}
			if _, err := os.Lstat(filepath.Join(lmnt, ".cvmfscatalog")); !os.IsNotExist(err) {
				t.Errorf("our layer shows the store's .cvmfscatalog: %v", err)
			}

			merged := filepath.Join(tmp, "merged")
			up, work := filepath.Join(tmp, "upper"), filepath.Join(tmp, "work")
			for _, d := range []string{merged, up, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lmnt+",upperdir="+up+",workdir="+work); err != nil {
				t.Fatalf("overlayfs over our layer over the store: %v", err)
			}
			t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
			if b, err := os.ReadFile(filepath.Join(merged, "etc/hello")); err != nil || string(b) != "hi" {
				t.Errorf("read through overlayfs: %q, %v", b, err)
			}
			if err := os.WriteFile(filepath.Join(merged, "etc/hello"), []byte("copied up"), 0o644); err != nil {
				t.Errorf("copy-up through overlayfs: %v", err)
			}
			if s.Stats().Opens == 0 {
				t.Errorf("no open reached the store")
			}
		})
	}
}

// layerOverStore publishes a layer (etc/hello, bin/sh) into a new store
// and mounts it with our layer filesystem in accounting mode acct; all is
// undone when the test ends. It returns the store, the manager, a
// temporary directory, the layer's mountpoint and its repository path.
func layerOverStore(t *testing.T, acct usage.Accounting, opts ...Opt) (s *Store, mgr *fusefs.Manager, tmp, lmnt, rel string) {
	t.Helper()
	ctx := context.Background()
	s, mnt := mountStore(t, nil, opts...)
	blob := testutil.MustLayer(testutil.File("etc/hello", "hi"), testutil.File("bin/sh", "#!"))
	layer := digest.FromBytes(blob)
	// Published through the backing tree, then a catalog reload.
	if _, err := ducc.New(s.Backing()).WriteLayer(ctx, ducc.LayerBlob{
		Digest:    layer,
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
		Open: func(context.Context) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(blob)), nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	s.Reload()
	mgr, err := fusefs.NewManager(ducc.New(mnt), fusefs.WithAccounting(acct))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close(context.Background()) })
	tmp = t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	lmnt = filepath.Join(tmp, "layer")
	if err := os.Mkdir(lmnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Mount(ctx, lmnt, layer); err != nil {
		t.Fatalf("our layer filesystem over the store: %v", err)
	}
	t.Cleanup(func() { mgr.Unmount(context.Background(), lmnt) })
	dir, err := ducc.New(s.Backing()).LayerDir(layer)
	if err != nil {
		t.Fatal(err)
	}
	rel, err = filepath.Rel(s.Backing(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, mgr, tmp, lmnt, rel
}

// TestLayerRemovedFromStore: the layer is removed from the repository and
// the client reloads its catalog while the layer is mounted. Nothing
// hangs; a file opened before and files not yet read fail rather than
// show data; the mount's health check says so.
func TestLayerRemovedFromStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		acct usage.Accounting
	}{
		{"open", usage.AccountOpen},
		{"bytes", usage.AccountBytes},
		{"reads", usage.AccountReads},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, mgr, _, lmnt, rel := layerOverStore(t, tc.acct)
			f, err := os.Open(filepath.Join(lmnt, "etc/hello"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := s.Remove(rel); err != nil {
				t.Fatal(err)
			}
			s.Reload()
			buf := make([]byte, 8)
			n, err := f.ReadAt(buf, 0)
			t.Logf("read of a file opened before: %q, %v", buf[:n], err)
			if err == nil {
				t.Errorf("a file opened before the removal still reads %q", buf[:n])
			}
			_, err = os.ReadFile(filepath.Join(lmnt, "bin/sh"))
			t.Logf("read of a file not opened before: %v", err)
			if err == nil {
				t.Errorf("a file of the removed layer still reads")
			}
			// The health check and the accounting see the layer gone.
			if cerr := mgr.Check(context.Background(), lmnt); !errdefs.IsFailedPrecondition(cerr) {
				t.Errorf("Check of the mount of a removed layer = %v, want FailedPrecondition", cerr)
			}
			if st, _ := mgr.Stats(); len(st) != 1 || !st[0].Removed {
				t.Errorf("stats of a removed layer: %+v, want it marked Removed", st)
			}
		})
	}
}
