package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

func TestIngest(t *testing.T) {
	ctx := context.Background()
	reg := testutil.StartRegistry()
	defer reg.Close()
	gz := testutil.MustLayer(testutil.Dir("etc"), testutil.File("etc/hello", "hi"), testutil.Whiteout("etc/gone"))
	z, err := testutil.ZstdLayer(testutil.File("z", "z"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := testutil.Image(gz, z)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := reg.Push("ingest", "v1", img)
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	var out bytes.Buffer
	// Flags after the image, as users type them.
	if err := run(ctx, []string{"ingest", ref, "--repo", dir, "--insecure"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "written") || !strings.Contains(lines[1], "skipped") ||
		!strings.Contains(lines[2], "1 layers written, 0 already present, 1 skipped") {
		t.Errorf("ingest output:\n%s", out.String())
	}
	repo := ducc.New(dir)
	layer := digest.FromBytes(gz)
	root, err := repo.Lookup(ctx, layer)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/hello", "etc/.wh.gone", ducc.CatalogMarker} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("layerfs lacks %s: %v", p, err)
		}
	}
	// layers.json records the diff id the image config gives, as DUCC does.
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := repo.DiffID(ctx, layer); err != nil || got.String() != cf.RootFS.DiffIDs[0].String() {
		t.Errorf("recorded diff id %s, %v; want %s", got, err, cf.RootFS.DiffIDs[0])
	}
	if origins, err := repo.Origins(layer); err != nil || len(origins) != 1 || origins[0] != config.String() {
		t.Errorf("origins %v %v, want [%s]", origins, err, config)
	}
	if _, err := repo.Lookup(ctx, digest.FromBytes(z)); err == nil {
		t.Errorf("the zstd layer was written")
	}

	out.Reset()
	if err := run(ctx, []string{"ingest", "--repo", dir, "--insecure", ref}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 layers written, 1 already present, 1 skipped") {
		t.Errorf("second ingest output:\n%s", out.String())
	}
	if n := reg.Served()[layer]; n != int64(len(gz)) {
		t.Errorf("registry served the layer %d bytes in total; want it fetched once (%d bytes)", n, len(gz))
	}
}

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"ingest", "--repo", "/tmp/x"},
		{"ingest", "a", "b", "--repo", "/tmp/x"},
		{"ingest", "example.com/a"},
		{"pull"},
		{"ingest", "--no-such-flag", "a"},
	} {
		if err := run(ctx, args, &bytes.Buffer{}); err == nil {
			t.Errorf("cvmfsctl %q succeeded", args)
		}
	}
}

// removedLayer is a layer the store no longer holds, in TestStats.
var removedLayer = digest.FromString("removed layer")

func TestStats(t *testing.T) {
	layer := digest.FromString("layer")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stats":
			json.NewEncoder(w).Encode([]usage.LayerStats{
				{Layer: layer, Mounts: 2, Opens: 5, UniqueFiles: 3, BytesRead: 2048, Accounting: usage.AccountBytes},
				{Layer: removedLayer, Mounts: 1, Accounting: usage.AccountBytes, Removed: true},
			})
		case "/stats/profile":
			if r.URL.Query().Get("layer") != layer.String() {
				http.Error(w, "bad layer", http.StatusBadRequest)
				return
			}
			json.NewEncoder(w).Encode([]usage.FileAccess{{Path: "bin/sh", Opens: 4, Bytes: 1024}})
		default:
			http.NotFound(w, r)
		}
	})
	srv := httptest.NewServer(handler)
	defer srv.Close()
	// The admin socket, as the daemon serves it.
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	admin := &http.Server{Handler: handler}
	go admin.Serve(l)
	defer admin.Close()
	for _, addr := range []string{strings.TrimPrefix(srv.URL, "http://"), "unix://" + sock} {
		t.Run(addr, func(t *testing.T) { testStats(t, addr, layer) })
	}
	if err := run(context.Background(), []string{"stats", "--address", "unix://relative.sock"}, &bytes.Buffer{}); err == nil {
		t.Errorf("a relative unix address did not fail")
	}
}

func testStats(t *testing.T, addr string, layer digest.Digest) {
	ctx := context.Background()

	var out bytes.Buffer
	if err := run(ctx, []string{"stats", "--address", addr}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), layer.String()) || !strings.Contains(out.String(), "bytes") || !strings.Contains(out.String(), "2KiB") {
		t.Errorf("stats output:\n%s", out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "REMOVED") != strings.HasPrefix(line, removedLayer.String()) {
			t.Errorf("only the removed layer's line says REMOVED:\n%s", out.String())
		}
	}
	out.Reset()
	if err := run(ctx, []string{"stats", "--address", addr, "--layer", layer.String()}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "bin/sh") {
		t.Errorf("profile output:\n%s", out.String())
	}
	if err := run(ctx, []string{"stats", "--address", addr, "--layer", "sha256:bad"}, &out); err == nil {
		t.Errorf("a bad layer did not fail")
	}
}

func TestIngestPicksPlatform(t *testing.T) {
	ctx := context.Background()
	reg := testutil.StartRegistry()
	defer reg.Close()
	idx := v1.ImageIndex(empty.Index)
	var wantLayer digest.Digest
	for _, arch := range []string{"amd64", "arm64"} {
		gz := testutil.MustLayer(testutil.File("arch", arch))
		img, err := testutil.Image(gz)
		if err != nil {
			t.Fatal(err)
		}
		if arch == "arm64" {
			wantLayer = digest.FromBytes(gz)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	r, err := name.ParseReference(reg.Ref("multi", "v1"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(ctx, []string{"ingest", "--platform", "linux/arm64", "--repo", dir, "--insecure", r.String()}, &out); err != nil {
		t.Fatal(err)
	}
	root, err := ducc.New(dir).Lookup(ctx, wantLayer)
	if err != nil {
		t.Fatalf("the arm64 layer is missing: %v\n%s", err, out.String())
	}
	if b, err := os.ReadFile(filepath.Join(root, "arch")); err != nil || string(b) != "arm64" {
		t.Errorf("arch file: %q %v", b, err)
	}
	out.Reset()
	if err := run(ctx, []string{"ingest", "--json", "--platform", "linux/arm64", "--repo", dir, "--insecure", r.String()}, &out); err != nil {
		t.Fatal(err)
	}
	var res ingestResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res.Layers) != 1 || res.Layers[0].Digest != wantLayer || res.Layers[0].Result != "present" {
		t.Errorf("ingest --json again: %+v, %v\n%s", res, err, out.String())
	}
}
