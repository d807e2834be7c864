//go:build linux

package faults

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// stack is a snapshotter over a FUSE manager over a DUCC repository that
// sits behind a faultfs.
type stack struct {
	sn     snapshot.Snapshotter
	mgr    *fusefs.Manager
	repo   *ducc.Repo
	faults *faults
	// layers are the digests written, in order, and diffIDs their diff
	// ids (a layer prepared alone is the chain of its diff id).
	layers, diffIDs []digest.Digest
}

const lookupTimeout = 500 * time.Millisecond

// newStack writes one layer per file map into a DUCC repository, serves it
// through a faultfs and builds the snapshotter over it.
func newStack(t *testing.T, acct usage.Accounting, layers ...map[string]string) *stack {
	t.Helper()
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	ctx := context.Background()
	tmp := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, tmp) })
	store, mnt, root := filepath.Join(tmp, "store"), filepath.Join(tmp, "cvmfs"), filepath.Join(tmp, "root")
	for _, d := range []string{store, mnt} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &stack{}
	for _, files := range layers {
		var entries []testutil.Entry
		for name, body := range files {
			entries = append(entries, testutil.File(name, body))
		}
		blob := testutil.MustLayer(entries...)
		d := digest.FromBytes(blob)
		res, err := ducc.New(store).WriteLayer(ctx, ducc.LayerBlob{
			Digest:    d,
			MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
			Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(blob)), nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.layers = append(s.layers, d)
		s.diffIDs = append(s.diffIDs, res.DiffID)
	}
	s.faults = mountFaultFS(t, store, mnt)
	s.repo = ducc.New(mnt)
	var err error
	s.mgr, err = fusefs.NewManager(s.repo, fusefs.WithAccounting(acct))
	if err != nil {
		t.Fatal(err)
	}
	s.sn, err = snapshot.New(ctx, root, snapshot.WithLayerFS(checkedFS{s.mgr, s.repo}), snapshot.WithLookupTimeout(lookupTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.sn.Close()
		s.mgr.Close(context.Background())
	})
	return s
}

// checkedFS is the FUSE manager with the diff ids the repository records,
// which the chain check needs (as the daemon wires it).
type checkedFS struct {
	*fusefs.Manager
	repo *ducc.Repo
}

func (c checkedFS) LayerDiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error) {
	return c.repo.DiffID(ctx, layer)
}

// prepare runs containerd's extraction Prepare for layer i as a base
// layer (the chain of its diff id) and returns the error
// (ErrAlreadyExists on a remote hit).
func (s *stack) prepare(t *testing.T, i int) error {
	t.Helper()
	target := s.diffIDs[i].String()
	_, err := s.sn.Prepare(context.Background(), "extract-"+target, "", snapshots.WithLabels(map[string]string{
		snapshot.LabelTarget:      target,
		snapshot.LabelLayerDigest: s.layers[i].String(),
	}))
	return err
}

// layerRoot returns where layer i's committed snapshot is mounted.
func (s *stack) layerRoot(t *testing.T, i int) string {
	t.Helper()
	target := s.diffIDs[i].String()
	ms, err := s.sn.View(context.Background(), "view-"+target+time.Now().Format("150405.000000000"), target)
	if err != nil || len(ms) != 1 {
		t.Fatalf("View %s: %+v, %v", target, ms, err)
	}
	return ms[0].Source
}

func (s *stack) errors(t *testing.T, i int) map[string]int64 {
	t.Helper()
	stats, _ := s.mgr.Stats()
	for _, st := range stats {
		if st.Layer == s.layers[i] {
			return st.Errors
		}
	}
	t.Fatalf("no stats for layer %d", i)
	return nil
}

// TestLayerDeletedWhileMounted: DUCC garbage collection removes a layer
// that is mounted. Readers of files not yet opened get an error, counted
// for that layer; the other layer keeps being served; nothing panics.
func TestLayerDeletedWhileMounted(t *testing.T) {
	s := newStack(t, usage.AccountOpen,
		map[string]string{"a1": "one", "a2": "two"},
		map[string]string{"b1": "bee"})
	for i := range s.layers {
		if err := s.prepare(t, i); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare layer %d = %v", i, err)
		}
	}
	ra, rb := s.layerRoot(t, 0), s.layerRoot(t, 1)
	if b, err := os.ReadFile(filepath.Join(ra, "a1")); err != nil || string(b) != "one" {
		t.Fatalf("read before the fault: %q, %v", b, err)
	}
	dir, _ := s.repo.LayerDir(s.layers[0])
	if err := os.RemoveAll(filepath.Join(faultStore(s, dir), "layerfs")); err != nil {
		t.Fatal(err)
	}
	_, err := os.ReadFile(filepath.Join(ra, "a2"))
	if err == nil {
		t.Fatal("reading a file of a deleted layer succeeded")
	}
	t.Logf("reader of the deleted layer got: %v", err)
	var n int64
	for _, c := range s.errors(t, 0) {
		n += c
	}
	if n == 0 {
		t.Fatalf("the error was not counted for the layer: %+v", s.errors(t, 0))
	}
	if b, err := os.ReadFile(filepath.Join(rb, "b1")); err != nil || string(b) != "bee" {
		t.Fatalf("the other layer stopped being served: %q, %v", b, err)
	}
	// A new container on the deleted layer fails, naming the layer and
	// the fix, instead of starting on an empty root; the layer is marked
	// removed in the stats.
	chainA := s.diffIDs[0].String()
	_, err = s.sn.Prepare(context.Background(), "container-on-deleted", chainA)
	if err == nil || !strings.Contains(err.Error(), s.layers[0].String()) || !strings.Contains(err.Error(), "pull it again") {
		t.Fatalf("Prepare of a container on the deleted layer = %v, want an error naming %s and the fix", err, s.layers[0])
	}
	t.Logf("container on the deleted layer: %v", err)
	stats, _ := s.mgr.Stats()
	for _, st := range stats {
		if st.Removed != (st.Layer == s.layers[0]) {
			t.Errorf("stats of %s: removed %v", st.Layer, st.Removed)
		}
	}
	// New snapshots of the other layer still come from the store.
	chainAB := identity.ChainID(s.diffIDs[:2]).String()
	if _, err := s.sn.Prepare(context.Background(), "extract-b2", chainA, snapshots.WithLabels(map[string]string{
		snapshot.LabelTarget: chainAB, snapshot.LabelLayerDigest: s.layers[1].String(),
	})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare after the fault = %v", err)
	}
}

// faultStore maps a path under the faultfs mount back to the backing store.
func faultStore(s *stack, path string) string {
	rel, _ := filepath.Rel(s.repo.Root(), path)
	return filepath.Join(filepath.Dir(s.repo.Root()), "store", rel)
}

// TestStoreHangsAtPrepare: a lookup that hangs longer than the lookup
// timeout falls back to a pull instead of blocking containerd.
func TestStoreHangsAtPrepare(t *testing.T) {
	s := newStack(t, usage.AccountOpen, map[string]string{"f": "x"}, map[string]string{"g": "y"})
	hang := s.layers[0].Encoded()
	s.faults.hang.Store(&hang)

	done := make(chan error, 1)
	go func() { done <- s.prepare(t, 0) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Prepare with a hanging store = %v, want writable mounts (a pull)", err)
		}
	case <-time.After(30 * lookupTimeout):
		t.Fatalf("Prepare still blocked after %v with a lookup timeout of %v", 30*lookupTimeout, lookupTimeout)
	}
	if _, err := s.sn.Stat(context.Background(), s.diffIDs[0].String()); !errdefs.IsNotFound(err) {
		t.Fatalf("a hanging layer was committed: %v", err)
	}
	// The other layer is still served while the lookup hangs.
	if err := s.prepare(t, 1); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a healthy layer during the hang = %v", err)
	}
	close(s.faults.release)
}

// TestStoreEIO: the store answers EIO. Opens that fail are seen and counted
// in every accounting mode; failed reads are seen in "bytes" mode (under
// passthrough the kernel reads the store directly and the daemon sees no
// read at all). Other layers keep being served.
func TestStoreEIO(t *testing.T) {
	for _, tc := range []struct {
		name string
		acct usage.Accounting
		set  func(f *faults, s string)
	}{
		{"open fails", usage.AccountOpen, func(f *faults, s string) { f.eioOpen.Store(&s) }},
		{"read fails", usage.AccountBytes, func(f *faults, s string) { f.eioRead.Store(&s) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, tc.acct, map[string]string{"bad": "data"}, map[string]string{"good": "data"})
			for i := range s.layers {
				if err := s.prepare(t, i); !errdefs.IsAlreadyExists(err) {
					t.Fatalf("Prepare layer %d = %v", i, err)
				}
			}
			tc.set(s.faults, s.layers[0].Encoded())
			_, err := os.ReadFile(filepath.Join(s.layerRoot(t, 0), "bad"))
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("reader got %v, want EIO", err)
			}
			if got := s.errors(t, 0)["EIO"]; got == 0 {
				t.Fatalf("EIO not counted for the layer: %+v", s.errors(t, 0))
			}
			if b, err := os.ReadFile(filepath.Join(s.layerRoot(t, 1), "good")); err != nil || string(b) != "data" {
				t.Fatalf("the healthy layer: %q, %v", b, err)
			}
		})
	}
}
