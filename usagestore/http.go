package usagestore

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// The handlers below serve the records as JSON; the adminapi package serves
// them under its routes and decides which listener serves them. The
// profiles name every file workloads read: serve them only to trusted
// readers (the 0600 admin socket).
//
// A request writes nothing and asks the source for the live figures once
// at most, not again within a second of the last time (the figures then
// are those last seen): readers cannot make the store rewrite its records
// nor hold the lock unmounts wait on. Repeated query values count once; a
// report of more than maxQueryImages images, or a profile of more than one
// layer or image, is refused (400).

// ProfileHandler serves ?layer=D, a layer's usage with its merged profile
// (usage.LayerUsage), or ?image=R, the same for each layer of image R
// served from the store ([]usage.LayerUsage).
func (s *Store) ProfileHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if len(distinct(q["layer"]))+len(distinct(q["image"])) > 1 {
			http.Error(w, "want one ?layer=DIGEST or one ?image=REF", http.StatusBadRequest)
			return
		}
		switch {
		case q.Has("layer"):
			d, err := layerdigest.Parse(q.Get("layer"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			s.profiles.refresh(r.Context(), true)
			u, ok, err := s.profiles.layer(r.Context(), d)
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
			s.profiles.refresh(r.Context(), true)
			out := []usage.LayerUsage{}
			seen := map[string]bool{}
			for _, l := range img.Layers {
				if l.Layer == "" || seen[l.Layer.String()] {
					continue
				}
				seen[l.Layer.String()] = true
				if u, ok, err := s.profiles.layer(r.Context(), l.Layer); err == nil && ok {
					out = append(out, u)
				}
			}
			writeJSONResponse(w, out)
		default:
			http.Error(w, "want ?layer=DIGEST or ?image=REF", http.StatusBadRequest)
		}
	})
}

// ImagesHandler serves every image recorded ([]usage.ImageUsage).
func (s *Store) ImagesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSONResponse(w, s.Images())
	})
}

// MissingHandler serves the images not fully served, most pulled first
// ([]usage.ImageUsage).
func (s *Store) MissingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := s.Missing()
		if out == nil {
			out = []usage.ImageUsage{}
		}
		writeJSONResponse(w, out)
	})
}

// ReportHandler serves ?image=R..., per-layer shares read of images R
// ([]usage.ReportRow).
func (s *Store) ReportHandler(opts ...HandlerOpt) http.Handler {
	var cfg handlerConfig
	for _, o := range opts {
		o(&cfg)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		images := distinct(r.URL.Query()["image"])
		if len(images) == 0 {
			http.Error(w, "want ?image=REF (one or more)", http.StatusBadRequest)
			return
		}
		if len(images) > maxQueryImages {
			http.Error(w, fmt.Sprintf("%d images asked, at most %d per report", len(images), maxQueryImages), http.StatusBadRequest)
			return
		}
		s.profiles.refresh(r.Context(), true)
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
}

type handlerConfig struct {
	cachedOnly bool
}

// HandlerOpt configures ReportHandler.
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

// maxQueryImages bounds the distinct images one report asks for.
const maxQueryImages = 64

// distinct returns vs without repeats, in first-seen order.
func distinct(vs []string) []string {
	var out []string
	seen := make(map[string]bool, len(vs))
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
