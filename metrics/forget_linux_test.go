//go:build linux

package metrics

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	cvmfstest "github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

type oneLayer struct {
	layer digest.Digest
	dir   string
}

func (s oneLayer) OpenLayer(ctx context.Context, layer digest.Digest) (*os.File, error) {
	if layer != s.layer {
		return nil, errdefs.ErrNotFound
	}
	fd, err := unix.Open(s.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: s.dir, Err: err}
	}
	return os.NewFile(uintptr(fd), s.dir), nil
}

// TestSeriesGoWithLastUnmount: a real layer mounted, read and unmounted
// leaves no series labelled with it in a scrape.
func TestSeriesGoWithLastUnmount(t *testing.T) {
	cvmfstest.RequiresRoot(t)
	cvmfstest.RequiresFUSE(t)
	dir := t.TempDir()
	t.Cleanup(func() { cvmfstest.SweepMounts(t, dir) })
	src := filepath.Join(dir, "layer")
	mp := filepath.Join(dir, "mnt")
	for _, d := range []string{src, mp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := digest.FromString("series")
	m, err := fusefs.NewManager(oneLayer{layer: l, dir: src})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(m))
	ctx := context.Background()

	if err := m.Mount(ctx, mp, l); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "data" {
		t.Fatalf("read through the mount: %q, %v", b, err)
	}
	if n := seriesOf(t, reg, l); n == 0 {
		t.Fatal("no series for a mounted layer")
	}
	if err := m.Unmount(ctx, mp); err != nil {
		t.Fatal(err)
	}
	if ok, err := mountutil.IsMounted(mp); ok || err != nil {
		t.Fatalf("still mounted after Unmount: %v", errors.Join(err))
	}
	if n := seriesOf(t, reg, l); n != 0 {
		t.Errorf("%d series still labelled with layer %s after its last unmount", n, l)
	}
}

// seriesOf counts the gathered series whose layer label is l.
func seriesOf(t *testing.T, g prometheus.Gatherer, l digest.Digest) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "layer" && lp.GetValue() == l.String() {
					n++
				}
			}
		}
	}
	return n
}
