//go:build linux

package fuseremote

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Manager is what the server serves; *fusefs.Manager satisfies it. Close
// unmounts everything; Serve calls it when it stops, a Server never does.
type Manager interface {
	Mount(ctx context.Context, mountpoint string, layer digest.Digest) error
	Check(ctx context.Context, mountpoint string) error
	Unmount(ctx context.Context, mountpoint string) error
	Close(ctx context.Context) error
	usage.Source
}

// ServerOpt configures a Server.
type ServerOpt func(*serverConfig) error

type serverConfig struct {
	stop func()
	uid  int
}

// WithStop sets the function a shutdown call invokes once its reply is
// written; it is expected to unmount everything and end the serving.
func WithStop(stop func()) ServerOpt {
	return func(c *serverConfig) error {
		c.stop = stop
		return nil
	}
}

// WithPeerUID sets the one uid allowed to connect; the default is the
// server's own effective uid.
func WithPeerUID(uid int) ServerOpt {
	return func(c *serverConfig) error {
		if uid < 0 {
			return fmt.Errorf("peer uid %d: %w", uid, errdefs.ErrInvalidArgument)
		}
		c.uid = uid
		return nil
	}
}

// Server serves a Manager's mounts to the snapshotter daemon whose root it
// was given, and to nobody else:
//
//   - Mount and Check accept only mountpoints of the form
//     <root>/snapshots/<id>/fs with no symlink on the way (errdefs.ErrInvalidArgument
//     otherwise), because a server running as root must not mount over any
//     path a caller names;
//   - Unmount accepts only mounts this server made and still holds
//     (ErrNotOwned otherwise): a mount of a previous server or of anyone
//     else is not its to remove;
//   - every connection whose peer (SO_PEERCRED) runs as another uid is
//     closed unanswered and logged.
//
// It is safe for concurrent use.
type Server struct {
	m    Manager
	cfg  serverConfig
	root string // absolute and clean, as given
	real string // root with symlinks resolved
	http *http.Server

	// locks serialises Mount and Unmount of one mountpoint, so that the
	// owned table and the Manager's mounts never disagree.
	locks keyedMutex

	mu    sync.Mutex
	owned map[string]digest.Digest // mountpoints (resolved) this server mounted
}

// NewServer returns a server of m for the daemon whose root directory is
// root, an existing absolute path.
func NewServer(m Manager, root string, opts ...ServerOpt) (*Server, error) {
	if m == nil {
		return nil, fmt.Errorf("nil manager: %w", errdefs.ErrInvalidArgument)
	}
	cfg := serverConfig{uid: os.Geteuid()}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("root %q is not absolute: %w", root, errdefs.ErrInvalidArgument)
	}
	root = filepath.Clean(root)
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", root, err)
	}
	s := &Server{m: m, cfg: cfg, root: root, real: real, owned: map[string]digest.Digest{}}
	s.http = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Serve answers the connections of l, checking each peer, until Shutdown.
// It returns http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.http.Serve(&peerListener{Listener: l, uid: s.cfg.uid, ctx: ctx})
}

// Shutdown stops accepting connections and waits (bounded by ctx) for the
// calls in flight. It does not unmount anything.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

func (s *Server) mount(ctx context.Context, mp string, layer digest.Digest) error {
	return s.locked(mp, func(path string, owned bool) error {
		if !owned {
			if err := checkMountDir(path); err != nil {
				return fmt.Errorf("mountpoint %q: %w", mp, err)
			}
		}
		if err := s.m.Mount(ctx, path, layer); err != nil {
			return err
		}
		s.mu.Lock()
		s.owned[path] = layer
		s.mu.Unlock()
		return nil
	})
}

func (s *Server) check(ctx context.Context, mp string) error {
	path, err := s.resolve(mp)
	if err != nil {
		return err
	}
	return s.m.Check(ctx, path)
}

func (s *Server) unmount(ctx context.Context, mp string) error {
	return s.locked(mp, func(path string, owned bool) error {
		if !owned {
			return fmt.Errorf("%q: %w", mp, ErrNotOwned)
		}
		if err := s.m.Unmount(ctx, path); err != nil {
			return err
		}
		s.mu.Lock()
		delete(s.owned, path)
		s.mu.Unlock()
		return nil
	})
}

// locked runs fn with the resolved mountpoint mp locked against other
// Mounts and Unmounts of it, telling whether this server made the mount
// there.
func (s *Server) locked(mp string, fn func(path string, owned bool) error) error {
	path, err := s.resolve(mp)
	if err != nil {
		return err
	}
	unlock := s.locks.lock(path)
	defer unlock()
	s.mu.Lock()
	_, owned := s.owned[path]
	s.mu.Unlock()
	return fn(path, owned)
}

func (s *Server) handler() http.Handler {
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
		return s.mount(ctx, req.Mountpoint, req.Layer)
	}))
	mux.Handle("POST "+pathCheck, call(func(ctx context.Context, req request) error {
		return s.check(ctx, req.Mountpoint)
	}))
	mux.Handle("POST "+pathUnmount, call(func(ctx context.Context, req request) error {
		return s.unmount(ctx, req.Mountpoint)
	}))
	mux.HandleFunc("GET "+pathStats, func(w http.ResponseWriter, r *http.Request) {
		st, err := s.m.Stats()
		if err != nil {
			reply(w, http.StatusInternalServerError, errorReply{Error: err.Error(), Class: classOf(err)})
			return
		}
		reply(w, http.StatusOK, st)
	})
	mux.HandleFunc("GET "+pathProfile, func(w http.ResponseWriter, r *http.Request) {
		layer, err := layerdigest.Parse(r.URL.Query().Get("layer"))
		if err != nil {
			reply(w, http.StatusBadRequest, errorReply{Error: err.Error(), Class: "invalid-argument"})
			return
		}
		prof, err := s.m.Profile(layer)
		if err != nil {
			reply(w, http.StatusInternalServerError, errorReply{Error: err.Error(), Class: classOf(err)})
			return
		}
		reply(w, http.StatusOK, prof)
	})
	mux.HandleFunc("POST "+pathShutdown, func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, struct{}{})
		if s.cfg.stop != nil {
			go s.cfg.stop()
		}
	})
	return mux
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the caller hung up: nothing to tell it
}

// keyedMutex is a mutex per string key, dropped when unused.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	mu sync.Mutex
	n  int // holders and waiters
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.n++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.n--; l.n == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
