package metrics

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// HandlerOpt configures Handler.
type HandlerOpt func(*handlerConfig)

type handlerConfig struct {
	noProfile bool
}

// WithoutProfile makes /stats/profile answer 403 Forbidden. The profile
// names every file each workload opened; serve it only where the readers
// are trusted (a 0600 unix socket).
func WithoutProfile() HandlerOpt {
	return func(c *handlerConfig) { c.noProfile = true }
}

// Handler serves:
//
//	/metrics                  Prometheus metrics gathered from g
//	/stats                    per-layer accounting as JSON (an array of LayerStats)
//	/stats/profile?layer=D    one layer's per-file access profile as JSON (403 with WithoutProfile)
//
// src may be nil (bind mode): /stats then answers an empty array.
func Handler(g prometheus.Gatherer, src Source, opts ...HandlerOpt) http.Handler {
	var cfg handlerConfig
	for _, o := range opts {
		o(&cfg)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		if src == nil {
			writeJSON(w, []struct{}{})
			return
		}
		writeJSON(w, src.Stats())
	})
	mux.HandleFunc("/stats/profile", func(w http.ResponseWriter, r *http.Request) {
		if cfg.noProfile {
			http.Error(w, "per-file access profiles are not served on this endpoint", http.StatusForbidden)
			return
		}
		layer, err := layerdigest.Parse(r.URL.Query().Get("layer"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if src == nil {
			writeJSON(w, []struct{}{})
			return
		}
		writeJSON(w, src.Profile(layer))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client hung up; nothing to tell it
}
