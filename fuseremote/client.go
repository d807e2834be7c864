package fuseremote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// ErrServerDown is wrapped (with errdefs.ErrUnavailable) by the errors of
// calls that found nobody listening on the socket (no socket, connection
// refused) or lost the connection, as opposed to errors the server answered
// and to a server that holds its socket but does not answer (ErrNoAnswer).
var ErrServerDown = errors.New("fuse server not reachable")

// ErrNoAnswer is wrapped (with errdefs.ErrUnavailable) by the errors of
// calls that reached the socket but got no answer within their deadline: a
// stopped or stuck server, which still holds its mounts. It is never
// wrapped together with ErrServerDown.
var ErrNoAnswer = errors.New("fuse server does not answer")

// Default deadlines of a call: dial, request and reply together.
const (
	// DefaultMountTimeout bounds Mount and Check; the daemon sets its
	// lookup-timeout instead.
	DefaultMountTimeout = 10 * time.Second
	// DefaultCallTimeout bounds every other call.
	DefaultCallTimeout = 5 * time.Second
)

// Client calls a Server on a unix socket. It is safe for concurrent use.
type Client struct {
	socket       string
	http         *http.Client
	mountTimeout time.Duration
	callTimeout  time.Duration
}

// ClientOpt configures a Client.
type ClientOpt func(*Client)

// WithTimeouts sets the deadline of each Mount and Check call (mount) and of
// every other call (other), from dial to the end of the reply; the
// caller's context may end a call sooner. A value <= 0 keeps the default
// (DefaultMountTimeout, DefaultCallTimeout).
func WithTimeouts(mount, other time.Duration) ClientOpt {
	return func(c *Client) {
		if mount > 0 {
			c.mountTimeout = mount
		}
		if other > 0 {
			c.callTimeout = other
		}
	}
}

// NewClient returns a client of the server listening on socket. It does not
// connect until the first call.
func NewClient(socket string, opts ...ClientOpt) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	c := &Client{
		socket:       socket,
		http:         &http.Client{Transport: tr},
		mountTimeout: DefaultMountTimeout,
		callTimeout:  DefaultCallTimeout,
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Socket returns the socket the client calls.
func (c *Client) Socket() string { return c.socket }

// Ping reports whether the server answers.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.stats(ctx)
	return err
}

// Mount asks the server to mount layer at mountpoint. Errors keep their
// errdefs class (ErrNotFound for a layer the store lacks); a server that
// cannot be reached, or does not answer within the mount timeout, answers
// ErrUnavailable (with ErrServerDown or ErrNoAnswer).
func (c *Client) Mount(ctx context.Context, mountpoint string, layer digest.Digest) error {
	return c.call(ctx, c.mountTimeout, http.MethodPost, pathMount, request{Mountpoint: mountpoint, Layer: layer}, nil)
}

// Check asks the server whether the mount at mountpoint is alive, within
// the mount timeout.
func (c *Client) Check(ctx context.Context, mountpoint string) error {
	return c.call(ctx, c.mountTimeout, http.MethodPost, pathCheck, request{Mountpoint: mountpoint}, nil)
}

// Unmount asks the server to unmount mountpoint (plainly, then lazily;
// never MNT_FORCE). A mountpoint the server did not mount is refused with
// ErrNotOwned.
func (c *Client) Unmount(ctx context.Context, mountpoint string) error {
	return c.call(ctx, c.callTimeout, http.MethodPost, pathUnmount, request{Mountpoint: mountpoint}, nil)
}

// Shutdown asks the server to unmount everything and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, c.callTimeout, http.MethodPost, pathShutdown, struct{}{}, nil)
}

// Stats returns the server's per-layer accounting, or the error that kept
// it from answering.
func (c *Client) Stats() ([]usage.LayerStats, error) {
	return c.stats(context.Background())
}

func (c *Client) stats(ctx context.Context) ([]usage.LayerStats, error) {
	var st []usage.LayerStats
	err := c.call(ctx, c.callTimeout, http.MethodGet, pathStats, nil, &st)
	return st, err
}

// Profile returns one layer's per-file profile, or the error that kept the
// server from answering.
func (c *Client) Profile(layer digest.Digest) ([]usage.FileAccess, error) {
	var prof []usage.FileAccess
	if err := c.call(context.Background(), c.callTimeout, http.MethodGet, pathProfile+"?layer="+url.QueryEscape(layer.String()), nil, &prof); err != nil {
		return nil, err
	}
	return prof, nil
}

// call makes one request, bounded (dial, request and reply) by timeout
// and by ctx, and decodes a 200 reply into out.
func (c *Client) call(ctx context.Context, timeout time.Duration, method, path string, body, out any) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(cctx, method, "http://fuse-server"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	answered, err := c.do(req, out)
	if err == nil || answered || ctx.Err() != nil || cctx.Err() == nil {
		return err
	}
	// Our deadline, not the caller's, ended the call: the server holds
	// its socket but does not answer (stopped, stuck). Say so loudly: calls
	// fail until it answers again.
	log.G(ctx).WithFields(log.Fields{"socket": c.socket, "call": req.URL.Path, "timeout": timeout}).
		Error("the FUSE server does not answer")
	return fmt.Errorf("fuse server at %s did not answer %s within %v: %w: %w", c.socket, req.URL.Path, timeout, ErrNoAnswer, errdefs.ErrUnavailable)
}

// do sends req and decodes a 200 reply into out. answered is set when the
// error is the server's own answer.
func (c *Client) do(req *http.Request, out any) (answered bool, err error) {
	resp, err := c.http.Do(req)
	if err != nil {
		if req.Context().Err() != nil || !isDown(err) {
			return false, fmt.Errorf("fuse server at %s: %v: %w", c.socket, err, errdefs.ErrUnavailable)
		}
		return false, fmt.Errorf("fuse server at %s: %v: %w: %w", c.socket, err, ErrServerDown, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var er errorReply
		if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
			return false, fmt.Errorf("fuse server: %s: %v: %w", resp.Status, err, errdefs.ErrUnknown)
		}
		return true, fromReply(er)
	}
	if out == nil {
		return true, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return false, fmt.Errorf("fuse server: bad reply to %s: %w", req.URL.Path, err)
	}
	return true, nil
}

// isDown reports whether err means that nobody serves the socket any more:
// no socket file, nobody listening, or a connection the server dropped. A
// full accept queue (EAGAIN) is a live but stuck server, not a dead one.
func isDown(err error) bool {
	if errors.Is(err, syscall.EAGAIN) {
		return false
	}
	return true
}
