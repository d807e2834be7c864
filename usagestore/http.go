package usagestore

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Handler serves the records as JSON:
//
//	/usage/profile?layer=D     a layer's usage with its merged profile (usage.LayerUsage)
//	/usage/profile?image=R     the same for each layer of image R served from the store
//	/usage/images              every image recorded ([]usage.ImageUsage)
//	/usage/missing             the images not fully served, most pulled first
//	/usage/report?image=R...   per-layer shares read ([]usage.ReportRow)
//
// The profiles name every file workloads read: serve it only to trusted
// readers (the 0600 admin socket).
func (s *Store) Handler(opts ...HandlerOpt) http.Handler {
	var cfg handlerConfig
	for _, o := range opts {
		o(&cfg)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /usage/profile", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case q.Has("layer"):
			d, err := layerdigest.Parse(q.Get("layer"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			u, ok, err := s.Layer(r.Context(), d)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if !ok {
				http.Error(w, fmt.Sprintf("no usage recorded for layer %s", d), http.StatusNotFound)
				return
			}
			writeJSONResponse(w, u)
		case q.Has("image"):
			img, ok := s.Image(q.Get("image"))
			if !ok {
				http.Error(w, fmt.Sprintf("image %q: no unpack of it recorded", q.Get("image")), http.StatusNotFound)
				return
			}
			out := []usage.LayerUsage{}
			for _, l := range img.Layers {
				if l.Layer == "" {
					continue
				}
				if u, ok, err := s.Layer(r.Context(), l.Layer); err == nil && ok {
					out = append(out, u)
				}
			}
			writeJSONResponse(w, out)
		default:
			http.Error(w, "want ?layer=DIGEST or ?image=REF", http.StatusBadRequest)
		}
	})
	mux.HandleFunc("GET /usage/images", func(w http.ResponseWriter, r *http.Request) {
		writeJSONResponse(w, s.Images())
	})
	mux.HandleFunc("GET /usage/missing", func(w http.ResponseWriter, r *http.Request) {
		out := s.Missing()
		if out == nil {
			out = []usage.ImageUsage{}
		}
		writeJSONResponse(w, out)
	})
	mux.HandleFunc("GET /usage/report", func(w http.ResponseWriter, r *http.Request) {
		images := r.URL.Query()["image"]
		if len(images) == 0 {
			http.Error(w, "want ?image=REF (one or more)", http.StatusBadRequest)
			return
		}
		rows, err := s.report(r.Context(), images, !cfg.cachedOnly)
		switch {
		case errdefs.IsNotFound(err):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSONResponse(w, rows)
	})
	return mux
}

type handlerConfig struct {
	cachedOnly bool
}

// HandlerOpt configures a Handler.
type HandlerOpt func(*handlerConfig)

// WithoutCounting makes the handler's reports start no count of a layer's
// contents (a walk of the layer in the repository): they give only the
// counts already made. For readers beyond the admin socket.
func WithoutCounting() HandlerOpt {
	return func(c *handlerConfig) { c.cachedOnly = true }
}

func writeJSONResponse(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
