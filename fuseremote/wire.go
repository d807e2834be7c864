package fuseremote

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Paths of the API.
const (
	pathMount    = "/v1/mount"
	pathCheck    = "/v1/check"
	pathUnmount  = "/v1/unmount"
	pathStats    = "/v1/stats"
	pathProfile  = "/v1/profile"
	pathShutdown = "/v1/shutdown"
)

// request is the body of mount, check and unmount.
type request struct {
	Mountpoint string        `json:"mountpoint"`
	Layer      digest.Digest `json:"layer,omitempty"`
}

// errorReply is the body of every failed call.
type errorReply struct {
	Error string `json:"error"`
	Class string `json:"class"`
}

// ErrNotOwned is the error (wrapping errdefs.ErrNotFound) of an Unmount of
// a mountpoint that the server did not mount or no longer holds, such as one
// left by a previous server. The server refuses to touch it; the caller may
// clear it itself.
var ErrNotOwned = fmt.Errorf("not a mount of this FUSE server: %w", errdefs.ErrNotFound)

// classes maps errdefs classes to their wire names, in the order they are
// tested.
var classes = []struct {
	name string
	err  error
}{
	{"not-owned", ErrNotOwned},
	{"not-found", errdefs.ErrNotFound},
	{"already-exists", errdefs.ErrAlreadyExists},
	{"invalid-argument", errdefs.ErrInvalidArgument},
	{"unavailable", errdefs.ErrUnavailable},
	{"failed-precondition", errdefs.ErrFailedPrecondition},
	{"permission-denied", errdefs.ErrPermissionDenied},
}

func classOf(err error) string {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "unknown"
}

func fromReply(r errorReply) error {
	for _, c := range classes {
		if c.name == r.Class {
			return fmt.Errorf("fuse server: %s: %w", r.Error, c.err)
		}
	}
	return fmt.Errorf("fuse server: %s", r.Error)
}
