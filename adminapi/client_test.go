package adminapi

import (
	"context"
	"errors"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// storeSource gives the usage store layer's live figures.
type storeSource struct{}

func (storeSource) Stats() ([]usage.LayerStats, error) {
	return []usage.LayerStats{{Layer: layer, Mounts: 1, Accounting: usage.AccountReads, Opens: 2, BytesRead: 100, UniqueFiles: 1}}, nil
}

func (storeSource) Profile(digest.Digest) ([]usage.FileAccess, error) {
	return []usage.FileAccess{{Path: "bin/sh", Opens: 2, Bytes: 100}}, nil
}

// records returns a usage store holding app:1, served from layer.
func records(t *testing.T) *usagestore.Store {
	t.Helper()
	ctx := context.Background()
	st, err := usagestore.Open(ctx, t.TempDir(), usagestore.WithFlushInterval(0), usagestore.WithSource(storeSource{}),
		usagestore.WithContents(func(context.Context, digest.Digest) (usage.Contents, error) {
			return usage.Contents{Files: 10, Bytes: 1000}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })
	st.Record(ctx, snapshot.LayerEvent{Image: "app:1", Layer: layer, Served: true})
	st.Record(ctx, snapshot.LayerEvent{Image: "zstd:1", Layer: digest.FromString("b"), Reason: "zstd"})
	return st
}

// TestClient: every call of the client reaches its route, over TCP and
// over a unix socket, and a refusal unwraps to its errdefs error.
func TestClient(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	h := Handler(Trusted, reg, source(), records(t))
	srv := httptest.NewServer(h)
	defer srv.Close()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	unix := NewServer(h)
	go unix.Serve(l)
	defer unix.Close()
	for _, addr := range []string{strings.TrimPrefix(srv.URL, "http://"), srv.URL, "unix://" + sock} {
		t.Run(addr, func(t *testing.T) {
			c, err := NewClient(addr)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := c.Metrics(ctx); err != nil || m["go_goroutines"] == nil {
				t.Errorf("Metrics = %d families, %v; want go_goroutines among them", len(m), err)
			}
			if s, err := c.Stats(ctx); err != nil || len(s) != 1 || s[0].Layer != layer {
				t.Errorf("Stats = %+v, %v", s, err)
			}
			if p, err := c.StatsProfile(ctx, layer); err != nil || len(p) != 1 || p[0].Path != "bin/sh" {
				t.Errorf("StatsProfile = %+v, %v", p, err)
			}
			if _, err := c.StatsProfile(ctx, "sha256:bad"); !errdefs.IsInvalidArgument(err) {
				t.Errorf("StatsProfile of a bad digest: %v, want ErrInvalidArgument", err)
			}
			var se *StatusError
			if _, err := c.LayerUsage(ctx, digest.FromString("none")); !errdefs.IsNotFound(err) || !errors.As(err, &se) || se.Code != http.StatusNotFound {
				t.Errorf("LayerUsage of an unknown layer: %v, want a 404 StatusError", err)
			}
			if u, err := c.LayerUsage(ctx, layer); err != nil || u.Layer != layer {
				t.Errorf("LayerUsage = %+v, %v", u, err)
			}
			if u, err := c.ImageUsage(ctx, "app:1"); err != nil || len(u) != 1 || u[0].Layer != layer {
				t.Errorf("ImageUsage = %+v, %v", u, err)
			}
			if im, err := c.Images(ctx); err != nil || len(im) != 2 {
				t.Errorf("Images = %+v, %v", im, err)
			}
			if m, err := c.Missing(ctx); err != nil || len(m) != 1 || m[0].Image != "zstd:1" {
				t.Errorf("Missing = %+v, %v", m, err)
			}
			if r, err := c.Report(ctx, "app:1", "zstd:1"); err != nil || len(r) != 2 {
				t.Errorf("Report = %+v, %v", r, err)
			}
		})
	}
	if _, err := NewClient("unix://relative.sock"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a relative unix address: %v, want ErrInvalidArgument", err)
	}
}

// TestListeners: what each kind of listener serves.
func TestListeners(t *testing.T) {
	for _, tc := range []struct {
		address string
		expose  bool
		want    Listener
	}{
		{"unix:///run/m.sock", false, Trusted},
		{"unix:///run/m.sock", true, Trusted},
		{"127.0.0.1:9783", false, Public},
		{"127.0.0.1:9783", true, PublicProfiles},
	} {
		if got := MetricsListener(tc.address, tc.expose); got != tc.want {
			t.Errorf("MetricsListener(%q, %v) = %v, want %v", tc.address, tc.expose, got, tc.want)
		}
	}
	st := records(t)
	profile := PathStatsProfile + "?layer=" + layer.String()
	for l, want := range map[Listener]map[string]int{
		Trusted:        {PathMetrics: 200, PathStats: 200, profile: 200, PathUsageImages: 200, PathUsageMissing: 200, PathUsageReport + "?image=app:1": 200},
		PublicProfiles: {PathMetrics: 200, PathStats: 200, profile: 200, PathUsageImages: 200, PathUsageMissing: 200, PathUsageReport + "?image=app:1": 200},
		Public:         {PathMetrics: 200, PathStats: 200, profile: 403, PathUsageImages: 404, PathUsageMissing: 404, PathUsageReport + "?image=app:1": 404},
	} {
		srv := httptest.NewServer(Handler(l, prometheus.NewRegistry(), source(), st))
		for path, code := range want {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != code {
				t.Errorf("listener %v: GET %s = %d, want %d", l, path, resp.StatusCode, code)
			}
		}
		srv.Close()
	}
	// Without records no listener serves /usage/.
	srv := httptest.NewServer(Handler(Trusted, prometheus.NewRegistry(), nil, nil))
	defer srv.Close()
	if resp, err := http.Get(srv.URL + PathUsageImages); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET %s without records: %v, %v; want 404", PathUsageImages, resp, err)
	}
}
