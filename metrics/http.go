package metrics

import (
	"encoding/json"
	"net/http"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// StatsHandler serves the per-layer accounting as JSON (an array of
// LayerStats). src may be nil (bind mode): it then answers an empty array;
// a source that cannot answer (a separate FUSE server out of reach) is a
// 503.
// The admin package serves it under its route.
func StatsHandler(src usage.Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src == nil {
			writeJSON(w, []struct{}{})
			return
		}
		st, err := src.Stats()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, st)
	})
}

// ProfileHandler serves ?layer=D's per-file access profile as JSON (an
// array of FileAccess); a layer that is not a valid digest is a 400. src
// may be nil (bind mode): it then answers an empty array. The profile
// names every file each workload opened: serve it only where the readers
// are trusted (the adminapi package's rules).
func ProfileHandler(src usage.Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		layer, err := layerdigest.Parse(r.URL.Query().Get("layer"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if src == nil {
			writeJSON(w, []struct{}{})
			return
		}
		prof, err := src.Profile(layer)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, prof)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client hung up; nothing to tell it
}
