//go:build linux

package custody

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/detached"
)

var _ fusefs.Custody = (*Client)(nil)

// callTimeout bounds one request when the caller's context has none.
const callTimeout = 5 * time.Second

// Client talks to the custody at a socket. It satisfies fusefs.Custody.
// It is safe for concurrent use; requests are sent one at a time on one
// connection, made again after an error.
type Client struct {
	path string

	mu sync.Mutex
	uc *net.UnixConn
}

// NewClient returns a Client of the custody at path; it connects at the
// first request.
func NewClient(path string) *Client { return &Client{path: path} }

// Keep hands c to the custody, replacing what it held under c.ID.
func (cl *Client) Keep(ctx context.Context, c fusefs.Connection) error {
	if c.Device == nil || c.Nodes == nil {
		return errors.New("custody keep: connection without its files")
	}
	_, err := cl.call(ctx, message{Op: "keep", Conn: toWire(c)}, c.Device, c.Nodes)
	return err
}

// Release makes the custody close the connection id.
func (cl *Client) Release(ctx context.Context, id string) error {
	_, err := cl.call(ctx, message{Op: "release", ID: id})
	return err
}

// List returns copies of every connection the custody holds; the caller
// owns (and must close) their files.
func (cl *Client) List(ctx context.Context) ([]fusefs.Connection, error) {
	return cl.call(ctx, message{Op: "list"})
}

// Ping reports whether the custody answers.
func (cl *Client) Ping(ctx context.Context) error {
	_, err := cl.call(ctx, message{Op: "ping"})
	return err
}

// call sends m and reads its replies: connections until End for a list,
// else one reply.
func (cl *Client) call(ctx context.Context, m message, files ...*os.File) (out []fusefs.Connection, err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.uc == nil {
		c, err := net.DialTimeout("unixpacket", cl.path, callTimeout)
		if err != nil {
			return nil, fmt.Errorf("custody at %s: %w", cl.path, err)
		}
		cl.uc = c.(*net.UnixConn)
	}
	defer func() {
		if err != nil {
			for _, c := range out {
				c.Close()
			}
			out = nil
			cl.uc.Close()
			cl.uc = nil
		}
	}()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(callTimeout)
	}
	cl.uc.SetDeadline(deadline)
	if err := send(cl.uc, m, files...); err != nil {
		return nil, fmt.Errorf("custody %s: %w", m.Op, err)
	}
	for {
		r, got, err := receive(cl.uc)
		if err != nil {
			return out, fmt.Errorf("custody %s: %w", m.Op, err)
		}
		if r.Err != "" {
			closeAll(got)
			return out, fmt.Errorf("custody %s: %s", m.Op, r.Err)
		}
		if m.Op != "list" || r.End {
			closeAll(got)
			return out, nil
		}
		if err := r.Conn.validate(); err != nil || len(got) != 2 {
			closeAll(got)
			return out, fmt.Errorf("custody list: bad entry (%v)", err)
		}
		out = append(out, fusefs.Connection{
			ID: r.Conn.ID, Mountpoint: r.Conn.Mountpoint, Layer: r.Conn.Layer,
			Init: r.Conn.Init, InitReply: r.Conn.InitReply, Device: got[0], Nodes: got[1],
		})
	}
}

// Close closes the connection to the custody (the custody keeps running).
func (cl *Client) Close() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.uc != nil {
		cl.uc.Close()
		cl.uc = nil
	}
	return nil
}

// startTimeout bounds the wait for a custody just started to answer.
const startTimeout = 5 * time.Second

// Ensure makes sure a custody answers at the Client's socket: if none
// does, it starts command (which must run Serve on that socket) in a
// session of its own, with its output appended to logPath, and waits for it
// to answer. The process is reaped if it exits while this one runs.
func (cl *Client) Ensure(ctx context.Context, command []string, logPath string) error {
	if cl.Ping(ctx) == nil {
		return nil
	}
	pid, exited, err := detached.Start(command, logPath)
	if err != nil {
		return fmt.Errorf("start custody: %w", err)
	}
	log.G(ctx).WithField("pid", pid).WithField("socket", cl.path).Info("started the custody of FUSE connections")
	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	for cl.Ping(ctx) != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("custody exited at start (%v); see %s", err, logPath)
		case <-deadline.C:
			return fmt.Errorf("custody did not answer on %s within %v; see %s", cl.path, startTimeout, logPath)
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// Watch waits, until ctx ends, for the custody to go away (its process
// died); each time, it starts a new one (see Ensure) and calls restored,
// which should hand it every connection again.
func (cl *Client) Watch(ctx context.Context, command []string, logPath string, restored func(context.Context)) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("unixpacket", cl.path, callTimeout)
		if err == nil {
			// The custody never writes unasked: the read returns when
			// it dies (or ctx ends).
			stop := context.AfterFunc(ctx, func() { c.Close() })
			_, _ = c.Read(make([]byte, 1))
			stop()
			c.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if err := cl.Ensure(ctx, command, logPath); err != nil {
			log.G(ctx).WithError(err).Error("custody of FUSE connections is down: running containers lose their layers if the daemon stops now")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		log.G(ctx).Warn("custody of FUSE connections restarted; handing it every mount again")
		restored(ctx)
	}
}
