package testutil

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
)

// Registry is an in-process OCI registry on 127.0.0.1 that records which
// blobs it served. Safe for concurrent use.
type Registry struct {
	srv *httptest.Server

	mu     sync.Mutex
	served map[digest.Digest]int64 // blob -> bytes sent by GET
}

// StartRegistry starts a registry on 127.0.0.1:0.
func StartRegistry() *Registry {
	r := &Registry{served: map[digest.Digest]int64{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d, ok := blobRequest(req)
		if !ok {
			h.ServeHTTP(w, req)
			return
		}
		cw := &countingResponse{ResponseWriter: w}
		h.ServeHTTP(cw, req)
		r.mu.Lock()
		r.served[d] += cw.n
		r.mu.Unlock()
	}))
	return r
}

// blobRequest reports whether req is a GET of /v2/<name>/blobs/<digest>.
func blobRequest(req *http.Request) (digest.Digest, bool) {
	if req.Method != http.MethodGet {
		return "", false
	}
	i := strings.LastIndex(req.URL.Path, "/blobs/")
	if !strings.HasPrefix(req.URL.Path, "/v2/") || i < 0 {
		return "", false
	}
	d, err := digest.Parse(req.URL.Path[i+len("/blobs/"):])
	return d, err == nil
}

type countingResponse struct {
	http.ResponseWriter
	n int64
}

func (c *countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Host returns host:port of the registry.
func (r *Registry) Host() string { return r.srv.Listener.Addr().String() }

// Ref returns the reference of repo:tag in this registry.
func (r *Registry) Ref(repo, tag string) string { return fmt.Sprintf("%s/%s:%s", r.Host(), repo, tag) }

// Push pushes img as repo:tag and returns its reference.
func (r *Registry) Push(repo, tag string, img v1.Image) (string, error) {
	ref := r.Ref(repo, tag)
	tagRef, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tagRef, img); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref, nil
}

// Served returns the bytes sent for each blob fetched since the last Reset
// (or start). A blob absent from the map was never fetched.
func (r *Registry) Served() map[digest.Digest]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[digest.Digest]int64, len(r.served))
	for d, n := range r.served {
		out[d] = n
	}
	return out
}

// Reset forgets what was served so far.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.served = map[digest.Digest]int64{}
}

// Close stops the registry. Safe to call twice.
func (r *Registry) Close() { r.srv.Close() }
