//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// fakeManager records mounts in memory.
type fakeManager struct {
	mu      sync.Mutex
	mounted map[string]digest.Digest
	present digest.Digest
	slow    bool
	calls   int // Mount and Unmount calls
}

func (f *fakeManager) Mount(ctx context.Context, mp string, layer digest.Digest) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.slow {
		<-ctx.Done()
		return fmt.Errorf("lookup: %w: %w", ctx.Err(), errdefs.ErrUnavailable)
	}
	if layer != f.present {
		return fmt.Errorf("layer %s: %w", layer, errdefs.ErrNotFound)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mounted[mp] = layer
	return nil
}

func (f *fakeManager) Check(ctx context.Context, mp string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mounted[mp]; !ok {
		return fmt.Errorf("%s: %w", mp, errdefs.ErrNotFound)
	}
	return nil
}

func (f *fakeManager) Unmount(ctx context.Context, mp string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	delete(f.mounted, mp)
	return nil
}

func (f *fakeManager) Close(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.mounted)
	return nil
}

func (f *fakeManager) Stats() ([]usage.LayerStats, error) {
	return []usage.LayerStats{{Layer: f.present, Mounts: len(f.mounted), Opens: 3, Errors: map[string]int64{"EIO": 1}}}, nil
}

func (f *fakeManager) Profile(layer digest.Digest) ([]usage.FileAccess, error) {
	return []usage.FileAccess{{Path: "bin/sh", Opens: 1, Bytes: 10}}, nil
}

// serve serves m on a socket for a daemon whose root is a new temporary
// directory, and returns a client and a function that makes (mkdir) the
// fs directory of snapshot id there.
func serve(t *testing.T, m Manager, stop func()) (*Client, func(id string) string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(m, root, WithStop(stop))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "fuse.sock")
	l, err := unixsock.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return NewClient(sock), func(id string) string {
		fs := filepath.Join(root, "snapshots", id, "fs")
		if err := os.MkdirAll(fs, 0o755); err != nil {
			t.Fatal(err)
		}
		return fs
	}
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	layer := digest.FromString("l")
	fm := &fakeManager{mounted: map[string]digest.Digest{}, present: layer}
	stopped := make(chan struct{})
	c, fsDir := serve(t, fm, func() { close(stopped) })
	mp, other := fsDir("1"), fsDir("2")

	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Mount(ctx, mp, digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Fatalf("Mount of an absent layer = %v, want ErrNotFound across the wire", err)
	}
	if err := c.Mount(ctx, mp, layer); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, mp); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, other); !errdefs.IsNotFound(err) {
		t.Fatalf("Check of an unknown mountpoint = %v", err)
	}
	st, err := c.Stats()
	if err != nil || len(st) != 1 || st[0].Layer != layer || st[0].Mounts != 1 || st[0].Errors["EIO"] != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	if p, err := c.Profile(layer); err != nil || len(p) != 1 || p[0].Path != "bin/sh" {
		t.Fatalf("Profile = %+v, %v", p, err)
	}
	if err := c.Unmount(ctx, mp); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, mp); !errdefs.IsNotFound(err) {
		t.Fatalf("Check after Unmount = %v", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not call stop")
	}
}

// TestMountTimeoutReachesServer: the daemon's lookup timeout cancels the
// server's Mount, which answers unavailable instead of hanging.
func TestMountTimeoutReachesServer(t *testing.T) {
	fm := &fakeManager{mounted: map[string]digest.Digest{}, slow: true}
	c, fsDir := serve(t, fm, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Mount(ctx, fsDir("1"), digest.FromString("l")); !errdefs.IsUnavailable(err) {
		t.Fatalf("Mount past the timeout = %v, want ErrUnavailable", err)
	}
}

func TestServerDown(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "nobody.sock"))
	if err := c.Check(context.Background(), "/mp"); !errdefs.IsUnavailable(err) || !errors.Is(err, ErrServerDown) {
		t.Fatalf("Check with no server = %v, want ErrUnavailable and ErrServerDown", err)
	}
	if st, err := c.Stats(); err == nil || st != nil {
		t.Fatalf("Stats with no server = %+v, %v", st, err)
	}
}

func TestBadRequests(t *testing.T) {
	c, _ := serve(t, &fakeManager{mounted: map[string]digest.Digest{}}, nil)
	resp, err := c.http.Post("http://fuse-server"+pathMount, "application/json", strings.NewReader("{"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed body: %d", resp.StatusCode)
	}
	resp, err = c.http.Get("http://fuse-server" + pathProfile + "?layer=..%2F..")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad layer: %d", resp.StatusCode)
	}
}
