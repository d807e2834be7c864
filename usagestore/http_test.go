package usagestore

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
		s.Record(ctx, Event{Image: "app:1", Layer: d, Served: true})
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
