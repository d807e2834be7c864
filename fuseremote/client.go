package fuseremote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
)

// ErrServerDown is wrapped (with errdefs.ErrUnavailable) by the errors of
// calls that could not reach the server at all, as opposed to errors the
// server answered.
var ErrServerDown = errors.New("fuse server not reachable")

// statsTimeout bounds Stats and Profile, which take no context.
const statsTimeout = 5 * time.Second

// Client calls a Server on a unix socket. It is safe for concurrent use.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client of the server listening on socket. It does not
// connect until the first call.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Ping reports whether the server answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.stats(ctx)
	return err
}

// Mount asks the server to mount layer at mountpoint. Errors keep their
// errdefs class (ErrNotFound for a layer the store lacks); a server that
// cannot be reached answers ErrUnavailable.
func (c *Client) Mount(ctx context.Context, mountpoint string, layer digest.Digest) error {
	return c.post(ctx, pathMount, request{Mountpoint: mountpoint, Layer: layer}, nil)
}

// Check asks the server whether the mount at mountpoint is alive.
func (c *Client) Check(ctx context.Context, mountpoint string) error {
	return c.post(ctx, pathCheck, request{Mountpoint: mountpoint}, nil)
}

// Unmount asks the server to unmount mountpoint (plainly, then lazily;
// never MNT_FORCE).
func (c *Client) Unmount(ctx context.Context, mountpoint string) error {
	return c.post(ctx, pathUnmount, request{Mountpoint: mountpoint}, nil)
}

// Shutdown asks the server to unmount everything and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.post(ctx, pathShutdown, struct{}{}, nil)
}

// Stats returns the server's per-layer accounting, or nil (logged) when it
// cannot be reached.
func (c *Client) Stats() []fusefs.LayerStats {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	st, err := c.stats(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("failed to read the FUSE server's stats")
	}
	return st
}

func (c *Client) stats(ctx context.Context) ([]fusefs.LayerStats, error) {
	var st []fusefs.LayerStats
	err := c.get(ctx, pathStats, &st)
	return st, err
}

// Profile returns one layer's per-file profile, or nil (logged) when the
// server cannot be reached.
func (c *Client) Profile(layer digest.Digest) []fusefs.FileAccess {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	var prof []fusefs.FileAccess
	if err := c.get(ctx, pathProfile+"?layer="+url.QueryEscape(layer.String()), &prof); err != nil {
		log.G(ctx).WithError(err).Warn("failed to read the FUSE server's profile")
	}
	return prof
}

func (c *Client) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://fuse-server"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, out)
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://fuse-server"+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.http.Do(req)
	if err != nil {
		if req.Context().Err() == nil {
			return fmt.Errorf("fuse server at %s: %v: %w: %w", c.socket, err, ErrServerDown, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("fuse server at %s: %v: %w", c.socket, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var er errorReply
		if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
			return fmt.Errorf("fuse server: %s: %w", resp.Status, errdefs.ErrUnknown)
		}
		return fromReply(er)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("fuse server: bad reply to %s: %w", req.URL.Path, err)
	}
	return nil
}
