//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

type profileSource struct{}

func (profileSource) Stats() ([]usage.LayerStats, error) { return nil, nil }
func (profileSource) Profile(digest.Digest) ([]usage.FileAccess, error) {
	return []usage.FileAccess{{Path: "home/alice/secret", Opens: 1}}, nil
}

// get GETs path over c and returns the status code and body.
func get(t *testing.T, c *http.Client, base, path string) (int, string) {
	t.Helper()
	resp, err := c.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", base, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

// TestProfileOnlyWhereTrusted: on a TCP metrics-address /metrics and
// /stats answer, /stats/profile is refused unless expose-profile; the
// admin socket (0600) serves it.
func TestProfileOnlyWhereTrusted(t *testing.T) {
	ctx := context.Background()
	profile := "/stats/profile?layer=" + digest.FromString("x").String()
	for _, expose := range []bool{false, true} {
		t.Run(fmt.Sprintf("expose-profile=%v", expose), func(t *testing.T) {
			cfg := config.Default()
			cfg.MetricsAddress = "127.0.0.1:0"
			cfg.ExposeProfile = expose
			admin := filepath.Join(t.TempDir(), "admin.sock")
			e, err := serveHTTP(ctx, cfg, admin, profileSource{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer e.stop(ctx)
			tcp := "http://" + e.metrics.String()
			for _, p := range []string{"/metrics", "/stats"} {
				if code, _ := get(t, http.DefaultClient, tcp, p); code != http.StatusOK {
					t.Errorf("TCP %s = %d, want 200", p, code)
				}
			}
			code, body := get(t, http.DefaultClient, tcp, profile)
			if leaked := strings.Contains(body, "alice"); leaked != expose || (code == http.StatusOK) != expose {
				t.Errorf("TCP /stats/profile = %d %q; want it served only with expose-profile", code, body)
			}
			if fi, err := os.Stat(admin); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("admin socket: %v, %v; want mode 0600", fi, err)
			}
			if code, body := get(t, unixClient(admin), "http://admin", profile); code != http.StatusOK || !strings.Contains(body, "alice") {
				t.Errorf("admin socket /stats/profile = %d %q", code, body)
			}
		})
	}
}

// TestMetricsSocketPathIsAFile: a regular file at the unix metrics-address
// is neither removed nor replaced; the endpoint fails to start, saying why.
func TestMetricsSocketPathIsAFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "important.txt")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.MetricsAddress = "unix://" + file
	e, err := serveHTTP(context.Background(), cfg, filepath.Join(dir, "admin.sock"), nil, nil)
	if err == nil {
		e.stop(context.Background())
		t.Fatal("serveHTTP over a regular file succeeded")
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %q does not name the path and say it is not a socket", err)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("file at the metrics socket path: %q, %v", b, err)
	}
}

// TestDaemonMetricsSocketPathIsAFile: the daemon, configured with a
// regular file as its unix metrics-address, exits non-zero naming the
// problem, and the file is intact.
func TestDaemonMetricsSocketPathIsAFile(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "important.txt")
	if err := os.WriteFile(file, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf("absolute-mountpoint = %q\nmount-mode = \"bind\"\nmetrics-address = %q\n", filepath.Join(dir, "repo"), "unix://"+file)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--address", filepath.Join(dir, "snap.sock"), "--root", filepath.Join(dir, "root"), "--config", cfgPath).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("daemon with a file as metrics socket: %v (ctx %v); output:\n%s", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "not a socket") {
		t.Errorf("daemon output does not say why:\n%s", out)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("file at the metrics socket path: %q, %v", b, err)
	}
}

// TestUsageOverTCP: a TCP metrics-address serves /usage/ only with
// expose-profile, and its reports never start a layer's count (only the
// admin socket's do).
func TestUsageOverTCP(t *testing.T) {
	ctx := context.Background()
	layer := digest.FromString("layer")
	for _, expose := range []bool{false, true} {
		t.Run(fmt.Sprintf("expose-profile=%v", expose), func(t *testing.T) {
			counts := make(chan digest.Digest, 10)
			records, err := usagestore.Open(ctx, t.TempDir(), usagestore.WithFlushInterval(0),
				usagestore.WithContents(func(_ context.Context, d digest.Digest) (usage.Contents, error) {
					counts <- d
					return usage.Contents{Files: 1, Bytes: 1}, nil
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer records.Close(ctx)
			records.Record(ctx, snapshot.LayerEvent{Image: "app:1", Layer: layer, Served: true})
			cfg := config.Default()
			cfg.MetricsAddress = "127.0.0.1:0"
			cfg.ExposeProfile = expose
			admin := filepath.Join(t.TempDir(), "admin.sock")
			e, err := serveHTTP(ctx, cfg, admin, profileSource{}, records)
			if err != nil {
				t.Fatal(err)
			}
			defer e.stop(ctx)
			tcp := "http://" + e.metrics.String()
			for _, p := range []string{"/usage/images", "/usage/report?image=app:1"} {
				code, body := get(t, http.DefaultClient, tcp, p)
				if (code == http.StatusOK) != expose || (expose && strings.Contains(body, `"Counting":true`)) {
					t.Errorf("TCP %s = %d %q; want served only with expose-profile, without counting", p, code, body)
				}
			}
			// The admin socket's report counts the layer (once).
			for {
				code, body := get(t, unixClient(admin), "http://admin", "/usage/report?image=app:1")
				if code != http.StatusOK || !strings.Contains(body, layer.String()) {
					t.Fatalf("admin socket report = %d %q", code, body)
				}
				if !strings.Contains(body, `"Counting":true`) {
					break
				}
				time.Sleep(time.Millisecond)
			}
			if len(counts) != 1 {
				t.Errorf("%d counts, want 1", len(counts))
			}
		})
	}
}

// TestAdminSocketFailureKeepsServing: an admin socket that cannot be made
// is logged, and the other endpoints are served all the same.
func TestAdminSocketFailureKeepsServing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.MetricsAddress = "127.0.0.1:0"
	e, err := serveHTTP(ctx, cfg, filepath.Join(file, "admin.sock"), profileSource{}, nil)
	if err != nil {
		t.Fatalf("serveHTTP with an impossible admin socket: %v", err)
	}
	defer e.stop(ctx)
	if code, _ := get(t, http.DefaultClient, "http://"+e.metrics.String(), "/metrics"); code != http.StatusOK {
		t.Errorf("TCP /metrics = %d, want 200", code)
	}
}

// TestHTTPServersTimeouts: no endpoint keeps a slow or idle connection
// forever.
func TestHTTPServersTimeouts(t *testing.T) {
	ctx := context.Background()
	cfg := config.Default()
	cfg.MetricsAddress = "127.0.0.1:0"
	e, err := serveHTTP(ctx, cfg, filepath.Join(t.TempDir(), "admin.sock"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.stop(ctx)
	if len(e.servers) != 2 {
		t.Fatalf("%d servers, want 2", len(e.servers))
	}
	for _, srv := range e.servers {
		if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout <= 0 || srv.IdleTimeout <= 0 {
			t.Errorf("server timeouts: header %v, read %v, write %v, idle %v; want all set", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout)
		}
	}
}
