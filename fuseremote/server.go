package fuseremote

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
)

// Manager is what the server serves; *fusefs.Manager satisfies it.
type Manager interface {
	Mount(ctx context.Context, mountpoint string, layer digest.Digest) error
	Check(ctx context.Context, mountpoint string) error
	Unmount(ctx context.Context, mountpoint string) error
	Stats() []fusefs.LayerStats
	Profile(layer digest.Digest) []fusefs.FileAccess
}

// NewHandler returns the API over m. A call to shutdown invokes stop once
// the reply is written; stop is expected to unmount everything and end the
// process's serving.
func NewHandler(m Manager, stop func()) http.Handler {
	mux := http.NewServeMux()
	call := func(fn func(ctx context.Context, req request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var req request
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				reply(w, http.StatusBadRequest, errorReply{Error: err.Error(), Class: "invalid-argument"})
				return
			}
			// The request's context ends when the daemon gives up (its
			// lookup timeout), which aborts a slow Mount.
			if err := fn(r.Context(), req); err != nil {
				reply(w, http.StatusConflict, errorReply{Error: err.Error(), Class: classOf(err)})
				return
			}
			reply(w, http.StatusOK, struct{}{})
		}
	}
	mux.Handle("POST "+pathMount, call(func(ctx context.Context, req request) error {
		return m.Mount(ctx, req.Mountpoint, req.Layer)
	}))
	mux.Handle("POST "+pathCheck, call(func(ctx context.Context, req request) error {
		return m.Check(ctx, req.Mountpoint)
	}))
	mux.Handle("POST "+pathUnmount, call(func(ctx context.Context, req request) error {
		return m.Unmount(ctx, req.Mountpoint)
	}))
	mux.HandleFunc("GET "+pathStats, func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, m.Stats())
	})
	mux.HandleFunc("GET "+pathProfile, func(w http.ResponseWriter, r *http.Request) {
		layer, err := digest.Parse(r.URL.Query().Get("layer"))
		if err != nil {
			reply(w, http.StatusBadRequest, errorReply{Error: err.Error(), Class: "invalid-argument"})
			return
		}
		reply(w, http.StatusOK, m.Profile(layer))
	})
	mux.HandleFunc("POST "+pathShutdown, func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, struct{}{})
		if stop != nil {
			go stop()
		}
	})
	return mux
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the caller hung up: nothing to tell it
}
