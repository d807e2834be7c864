package adminapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/metrics"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// fakeSource gives one mounted layer's figures and profile.
type fakeSource struct{}

func (fakeSource) Stats() ([]usage.LayerStats, error) {
	return []usage.LayerStats{{Layer: layer, Mounts: 1, Accounting: usage.AccountReads, Opens: 7}}, nil
}

func (fakeSource) Profile(digest.Digest) ([]usage.FileAccess, error) {
	return []usage.FileAccess{{Path: "bin/sh", Opens: 2, Bytes: 100}}, nil
}

var layer = digest.FromString("layer")

func source() fakeSource { return fakeSource{} }

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(source()))
	srv := httptest.NewServer(Handler(Trusted, reg, source(), nil))
	defer srv.Close()

	var stats []usage.LayerStats
	getJSON(t, srv.URL+"/stats", http.StatusOK, &stats)
	if len(stats) != 1 || stats[0].Opens != 7 || stats[0].Layer != layer {
		t.Fatalf("/stats = %+v", stats)
	}
	var prof []usage.FileAccess
	getJSON(t, srv.URL+"/stats/profile?layer="+layer.String(), http.StatusOK, &prof)
	if len(prof) != 1 || prof[0].Path != "bin/sh" {
		t.Fatalf("/stats/profile = %+v", prof)
	}
	for _, bad := range []string{"", "sha256:..%2F..%2Fetc", "md5:abc"} {
		getJSON(t, srv.URL+"/stats/profile?layer="+bad, http.StatusBadRequest, nil)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %v", err)
	}
	resp.Body.Close()

	// Without the profile: 403 whatever the query, the rest unchanged.
	public := httptest.NewServer(Handler(Public, reg, source(), nil))
	defer public.Close()
	getJSON(t, public.URL+"/stats/profile?layer="+layer.String(), http.StatusForbidden, nil)
	getJSON(t, public.URL+"/stats", http.StatusOK, &stats)

	// Bind mode: no source, empty answers.
	empty := httptest.NewServer(Handler(Trusted, prometheus.NewRegistry(), nil, nil))
	defer empty.Close()
	getJSON(t, empty.URL+"/stats", http.StatusOK, &stats)
	if len(stats) != 0 {
		t.Fatalf("/stats without a source = %+v", stats)
	}
}

func getJSON(t *testing.T, url string, code int, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != code {
		t.Fatalf("GET %s = %d, want %d", url, resp.StatusCode, code)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
}
