package main

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"image/png"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/adminapi"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

type oneLayerSource struct {
	layer digest.Digest
}

func (s oneLayerSource) Stats() ([]usage.LayerStats, error) {
	t := time.Unix(100, 0)
	return []usage.LayerStats{{Layer: s.layer, Mounts: 1, Accounting: usage.AccountReads, Opens: 3, BytesRead: 300, UniqueFiles: 2, FirstAccess: t, LastAccess: t}}, nil
}

func (s oneLayerSource) Profile(digest.Digest) ([]usage.FileAccess, error) {
	return []usage.FileAccess{{Path: "lib/a,b.so", Opens: 2, Bytes: 200}, {Path: "bin/sh", Opens: 1, Bytes: 100}}, nil
}

// usageDaemon serves a usage store holding app:1 (layer A served, 2 files
// of 10 read, 300 of 1000 bytes; layer B pulled) and zstd:1 (pulled
// twice), as the daemon's admin socket does.
func usageDaemon(t *testing.T) (string, digest.Digest) {
	t.Helper()
	ctx := context.Background()
	a, b := digest.FromString("a"), digest.FromString("b")
	st, err := usagestore.Open(ctx, t.TempDir(), usagestore.WithFlushInterval(0), usagestore.WithSource(oneLayerSource{a}),
		usagestore.WithContents(func(context.Context, digest.Digest) (usage.Contents, error) {
			return usage.Contents{Files: 10, Bytes: 1000}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(ctx) })
	st.Record(ctx, snapshot.LayerEvent{Image: "registry.example/app:1", Layer: a, Served: true})
	st.Record(ctx, snapshot.LayerEvent{Image: "registry.example/app:1", Layer: b, Reason: "not-in-repository"})
	for range 2 {
		st.Record(ctx, snapshot.LayerEvent{Image: "docker.io/library/zstd:1", Layer: b, Reason: "zstd"})
	}
	srv := httptest.NewServer(adminapi.Handler(adminapi.Trusted, prometheus.NewRegistry(), nil, st))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), a
}

func TestProfileCommand(t *testing.T) {
	addr, a := usageDaemon(t)
	ctx := context.Background()
	for _, arg := range []string{a.String(), "registry.example/app:1"} {
		var out bytes.Buffer
		if err := run(ctx, []string{"profile", arg, "--address", addr}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "2 files, 3 opens") || !strings.Contains(out.String(), "lib/a,b.so") {
			t.Errorf("profile %s:\n%s", arg, out.String())
		}
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"profile", "--csv", "--address", addr, a.String()}, &out); err != nil {
		t.Fatal(err)
	}
	want := "layer,path,opens,bytes\n" + a.String() + ",\"lib/a,b.so\",2,200\n" + a.String() + ",bin/sh,1,100\n"
	if out.String() != want {
		t.Errorf("csv:\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := run(ctx, []string{"profile", "--json", "--address", addr, a.String()}, &out); err != nil {
		t.Fatal(err)
	}
	var got []usage.LayerUsage
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || len(got) != 1 || got[0].Files != 2 || got[0].Bytes != 300 {
		t.Errorf("json %s: %+v %v", out.String(), got, err)
	}
	if err := run(ctx, []string{"profile", "--address", addr, "no/such:image"}, &out); err == nil {
		t.Error("an unknown image did not fail")
	}

	// --publish: the file a repository publishes next to the layer, which
	// the daemon's prefetch reads back.
	out.Reset()
	if err := run(ctx, []string{"profile", "--publish", "--address", addr, a.String()}, &out); err != nil {
		t.Fatal(err)
	}
	paths, err := usage.ParsePublishedProfile(out.Bytes(), a)
	if err != nil || !slices.Equal(paths, []string{"lib/a,b.so", "bin/sh"}) {
		t.Errorf("published profile %s: %v, %v", out.String(), paths, err)
	}
	if err := run(ctx, []string{"profile", "--publish", "--address", addr, "registry.example/app:1"}, &out); err == nil {
		t.Error("--publish of an image did not fail")
	}
}

func TestReportCommand(t *testing.T) {
	addr, _ := usageDaemon(t)
	dir := t.TempDir()
	var out bytes.Buffer
	args := []string{"report", "--address", addr, "registry.example/app:1", "docker.io/library/zstd:1",
		"--png", filepath.Join(dir, "r.png"), "--svg", filepath.Join(dir, "r.svg"), "--html", filepath.Join(dir, "r.html")}
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20.0%", "30.0%", "registry (not-in-repository)", "registry (zstd)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	f, err := os.Open(filepath.Join(dir, "r.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("PNG chart: %v", err)
	}
	for _, name := range []string{"r.svg", "r.html"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !strings.Contains(string(b), "<svg") || !strings.Contains(string(b), "bytes read") {
			t.Errorf("%s: %v\n%.300s", name, err, b)
		}
	}
	if os.Getenv("CVMFSCTL_CHART") != "" {
		os.WriteFile(os.Getenv("CVMFSCTL_CHART"), mustRead(t, filepath.Join(dir, "r.png")), 0o644)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMissingCommand(t *testing.T) {
	addr, _ := usageDaemon(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"missing", "--address", addr}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "docker.io/library/zstd:1") || !strings.Contains(lines[1], "zstd") || !strings.HasPrefix(lines[2], "registry.example/app:1") {
		t.Errorf("missing:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"missing", "--ducc", "--address", addr}, &out); err != nil {
		t.Fatal(err)
	}
	want := "- 'https://registry.hub.docker.com/library/zstd:1'\n- 'https://registry.example/app:1'\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("ducc:\n%s\nwant the lines\n%s", out.String(), want)
	}
}

// TestHTMLEscapes: names from the daemon (hostile labels) cannot inject
// markup into the report page.
func TestHTMLEscapes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.html")
	rows := []usage.ReportRow{
		{Image: "a<script>alert(1)</script>", Layer: digest.FromString("x"), Served: true, FilesRead: 1, FilesTotal: 2},
		{Image: "b", Reason: "<b>", Served: false},
	}
	if err := writeHTML(path, rows); err != nil {
		t.Fatal(err)
	}
	b := mustRead(t, path)
	if strings.Contains(string(b), "<script>") || strings.Contains(string(b), "(<b>)") {
		t.Errorf("unescaped names in the page:\n%s", b)
	}
}

// TestReportCounting: a layer whose count outlasts --wait is reported as
// being counted, with a word to ask again.
func TestReportCounting(t *testing.T) {
	ctx := context.Background()
	a := digest.FromString("a")
	release := make(chan struct{})
	defer close(release)
	st, err := usagestore.Open(ctx, t.TempDir(), usagestore.WithFlushInterval(0),
		usagestore.WithContents(func(ctx context.Context, _ digest.Digest) (usage.Contents, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return usage.Contents{}, ctx.Err()
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(ctx)
	st.Record(ctx, snapshot.LayerEvent{Image: "big:1", Layer: a, Served: true})
	srv := httptest.NewServer(adminapi.Handler(adminapi.Trusted, prometheus.NewRegistry(), nil, st))
	defer srv.Close()
	var out bytes.Buffer
	if err := run(ctx, []string{"report", "--wait", "0s", "--address", strings.TrimPrefix(srv.URL, "http://"), "big:1"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"counting", "run the report again"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
