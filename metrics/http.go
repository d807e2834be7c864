package metrics

import (
	"encoding/json"
	"net/http"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// StatsHandler serves the per-layer accounting as JSON (an array of
// LayerStats). src may be nil (bind mode): it then answers an empty array.
// The admin package serves it under its route.
func StatsHandler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if src == nil {
			writeJSON(w, []struct{}{})
			return
		}
		writeJSON(w, src.Stats())
	})
}

// ProfileHandler serves ?layer=D's per-file access profile as JSON (an
// array of FileAccess); a layer that is not a valid digest is a 400. src
// may be nil (bind mode): it then answers an empty array. The profile
// names every file each workload opened: serve it only where the readers
// are trusted (the adminapi package's rules).
func ProfileHandler(src Source) http.Handler {
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
		writeJSON(w, src.Profile(layer))
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client hung up; nothing to tell it
}
