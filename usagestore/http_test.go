package usagestore

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestReadsDoNotWrite: a report or an image's profile, whatever its
// repeated query values, asks the live figures once at most (and not again
// within a second) and writes no record; the periodic flush writes them.
// Too many images in one query is a 400 saying so.
func TestReadsDoNotWrite(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource()
	dir := t.TempDir()
	s := open(t, dir, WithSource(src))
	var layers []digest.Digest
	for i := range 30 {
		d := digest.FromString(fmt.Sprint(i))
		layers = append(layers, d)
		s.Record(ctx, snapshot.LayerEvent{Image: "app:1", Layer: d, Served: true})
		src.session(d, time.Unix(10, 0), fa("x", 1, 100))
	}
	srv := httptest.NewServer(handler(s))
	defer srv.Close()
	records := func() int {
		ents, err := os.ReadDir(filepath.Join(dir, profilesDir))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	for _, path := range []string{
		"/usage/report?" + strings.Repeat("image=app:1&", 20),
		"/usage/profile?image=app:1",
		"/usage/profile?layer=" + layers[0].String(),
	} {
		before := src.asked
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if n := src.asked - before; n > 1 {
			t.Errorf("GET %.40s... asked the live figures %d times, want once at most", path, n)
		}
		if n := records(); n != 0 {
			t.Errorf("GET %.40s... wrote %d records", path, n)
		}
	}
	if src.asked > 1 {
		t.Errorf("three GETs within a second asked the live figures %d times, want once", src.asked)
	}
	var rows []usage.ReportRow
	getJSON(t, srv.URL+"/usage/report?image=app:1&image=app:1", &rows)
	if len(rows) != len(layers) || rows[0].FilesRead != 1 {
		t.Errorf("report of a repeated image: %d rows (first %+v), want %d rows with the live figures", len(rows), rows[0], len(layers))
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := records(); n != len(layers) {
		t.Errorf("flush wrote %d records, want %d", n, len(layers))
	}

	var q strings.Builder
	for i := range maxQueryImages + 1 {
		fmt.Fprintf(&q, "image=app:%d&", i)
	}
	resp, err := http.Get(srv.URL + "/usage/report?" + q.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("report of %d images: %s, want 400", maxQueryImages+1, resp.Status)
	}
}

// TestReportAndHandler: a report over the handler gives each layer's read
// and total files and bytes; the contents are counted once.
func TestReportAndHandler(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource()
	var counted int
	s := open(t, t.TempDir(), WithSource(src), WithContents(func(ctx context.Context, layer digest.Digest) (usage.Contents, error) {
		counted++
		return usage.Contents{Files: 10, Bytes: 1000}, nil
	}))
	s.Record(ctx, snapshot.LayerEvent{Image: "app:1", Layer: layerA, Served: true})
	s.Record(ctx, snapshot.LayerEvent{Image: "app:1", Layer: layerB, Reason: "not-in-repository"})
	src.session(layerA, time.Unix(10, 0), fa("x", 1, 100), fa("y", 1, 150))
	srv := httptest.NewServer(handler(s))
	defer srv.Close()
	var rows []usage.ReportRow
	for rows == nil || rows[0].Counting {
		rows = nil
		getJSON(t, srv.URL+"/usage/report?image=app:1", &rows)
	}
	getJSON(t, srv.URL+"/usage/report?image=app:1", &rows)
	want := []usage.ReportRow{
		{Image: "app:1", Layer: layerA, Served: true, Accounting: "reads", FilesRead: 2, BytesRead: 250, FilesTotal: 10, BytesTotal: 1000},
		{Image: "app:1", Layer: layerB, Reason: "not-in-repository"},
	}
	if !slices.Equal(rows, want) || counted != 1 {
		t.Errorf("report %+v (contents counted %d times), want %+v once", rows, counted, want)
	}
	var prof []usage.LayerUsage
	getJSON(t, srv.URL+"/usage/profile?image=app:1", &prof)
	if len(prof) != 1 || prof[0].Layer != layerA || len(prof[0].Profile) != 2 {
		t.Errorf("image profile %+v", prof)
	}
	for path, code := range map[string]int{
		"/usage/report?image=nope":               http.StatusNotFound,
		"/usage/report":                          http.StatusBadRequest,
		"/usage/profile?layer=sha256:../etc":     http.StatusBadRequest,
		"/usage/profile?layer=" + string(layerB): http.StatusNotFound,
		"/usage/profile":                         http.StatusBadRequest,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// handler serves s's handlers under their routes, as adminapi.Handler does
// on the admin socket (this package's tests cannot import adminapi, which
// imports it).
func handler(s *Store) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /usage/profile", s.ProfileHandler())
	mux.Handle("GET /usage/images", s.ImagesHandler())
	mux.Handle("GET /usage/missing", s.MissingHandler())
	mux.Handle("GET /usage/report", s.ReportHandler())
	return mux
}
