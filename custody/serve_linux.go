//go:build linux

package custody

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
)

// sweepInterval is how often the custody drops connections the kernel has
// ended (their mount is gone), in case no daemon said so.
const sweepInterval = 10 * time.Second

// held is a connection in custody.
type held struct {
	c          conn
	dev, nodes *os.File
}

func (h *held) close() {
	h.dev.Close()
	h.nodes.Close()
}

// server is the custody: the connections it holds, by ID.
type server struct {
	uid int
	// peers counts the connected peers; a daemon keeps one open while it
	// runs (Client.Watch).
	peers atomic.Int64

	mu    sync.Mutex
	conns map[string]*held
}

// Opt configures Serve.
type Opt func(*options)

type options struct{ exitWhenIdle bool }

// ExitWhenIdle makes Serve return once it has held nothing, with no peer
// connected, for two sweeps in a row (no daemon, no mount: nothing to
// keep). A custody the daemon starts itself exits so; one run by a
// service manager (a sidecar container) need not.
func ExitWhenIdle() Opt { return func(o *options) { o.exitWhenIdle = true } }

// PIDFile is where Serve writes its pid, next to its socket.
func PIDFile(socket string) string { return filepath.Join(filepath.Dir(socket), "custody.pid") }

// Serve runs the custody on the unix socket at path until ctx ends: it
// listens (the directory of path must be private to the custody's user;
// a stale socket is replaced), answers peers of its own uid, and drops
// connections whose mount is gone. It writes its pid to PIDFile(path).
//
// With ExitWhenIdle it also returns once it has nothing to keep. When ctx ends
// while no daemon is connected, it unmounts every mount it holds (plainly,
// else lazily; never forced) before returning: nothing would serve them
// again. Either way it closes every descriptor it holds.
func Serve(ctx context.Context, path string, opts ...Opt) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	l, err := listen(path)
	if err != nil {
		return err
	}
	defer l.Close()
	_ = os.WriteFile(PIDFile(path), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
	s := &server{uid: os.Geteuid(), conns: map[string]*held{}}
	ctx, idle := context.WithCancelCause(ctx)
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	if !o.exitWhenIdle {
		idle = nil
	}
	go s.sweep(ctx, idle)
	log.G(ctx).WithField("socket", path).WithField("pid", os.Getpid()).Info("custody serving")
	for {
		uc, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("custody accept: %w", err)
			} else {
				err = nil
			}
			s.exit(ctx, context.Cause(ctx) == errIdle)
			return err
		}
		s.peers.Add(1)
		go func() {
			defer s.peers.Add(-1)
			s.handle(ctx, uc)
		}()
	}
}

// errIdle ends a custody that has nothing to keep.
var errIdle = errors.New("nothing to keep")

// exit closes every connection held; first it unmounts their mounts if no
// daemon is connected (and the custody is not leaving because it is idle).
func (s *server) exit(ctx context.Context, idle bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unmount := !idle && s.peers.Load() == 0
	for id, h := range s.conns {
		if unmount {
			if err := mountutil.Unmount(h.c.Mountpoint); err != nil {
				log.G(ctx).WithError(err).WithField("mountpoint", h.c.Mountpoint).Warn("custody cannot unmount")
			} else {
				log.G(ctx).WithField("mountpoint", h.c.Mountpoint).WithField("layer", h.c.Layer).Info("custody unmounted a layer no daemon serves")
			}
		}
		h.close()
		delete(s.conns, id)
	}
}

// listen binds the SOCK_SEQPACKET socket at path, replacing a stale one.
func listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("custody socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unixpacket", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("a custody already listens on %s", path)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("custody socket %s exists and is not a socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale custody socket: %w", err)
		}
	}
	old := unix.Umask(0o077)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("custody listen on %s: %w", path, err)
	}
	return l, nil
}

// handle answers one peer's requests until it hangs up.
func (s *server) handle(ctx context.Context, uc *net.UnixConn) {
	defer uc.Close()
	if cred, err := unixsock.PeerCred(uc); err != nil || int(cred.Uid) != s.uid {
		entry := log.G(ctx).WithError(err)
		if cred != nil {
			entry = entry.WithField("uid", cred.Uid).WithField("pid", cred.Pid)
		}
		entry.Warn("custody refused a peer of another user")
		return
	}
	for {
		m, files, err := receive(uc)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && ctx.Err() == nil && !isEOF(err) {
				log.G(ctx).WithError(err).Warn("custody: bad request")
			}
			return
		}
		if err := s.answer(uc, m, files); err != nil {
			return
		}
	}
}

func isEOF(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || err.Error() == "EOF"
}

// answer serves one request; files are the descriptors that came with it.
func (s *server) answer(uc *net.UnixConn, m message, files []*os.File) error {
	switch m.Op {
	case "keep":
		if err := m.Conn.validate(); err != nil || len(files) != 2 {
			closeAll(files)
			return send(uc, message{Err: fmt.Sprintf("keep: want a valid record and 2 descriptors (%v)", err)})
		}
		s.put(&held{c: *m.Conn, dev: files[0], nodes: files[1]})
		return send(uc, message{})
	case "release":
		closeAll(files)
		s.drop(m.ID)
		return send(uc, message{})
	case "ping":
		closeAll(files)
		return send(uc, message{})
	case "list":
		closeAll(files)
		s.mu.Lock()
		list := make([]*held, 0, len(s.conns))
		for _, h := range s.conns {
			list = append(list, h)
		}
		// Sent under the lock: a concurrent release cannot close a
		// descriptor while it is being passed.
		defer s.mu.Unlock()
		for _, h := range list {
			c := h.c
			if err := send(uc, message{Conn: &c}, h.dev, h.nodes); err != nil {
				return err
			}
		}
		return send(uc, message{End: true})
	default:
		closeAll(files)
		return send(uc, message{Err: fmt.Sprintf("unknown operation %q", m.Op)})
	}
}

func (s *server) put(h *held) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.conns[h.c.ID]; old != nil {
		old.close()
	}
	s.conns[h.c.ID] = h
}

func (s *server) drop(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.conns[id]; h != nil {
		h.close()
		delete(s.conns, id)
	}
}

// sweep drops, every sweepInterval, the connections the kernel has ended,
// and, given idle, ends the custody when it has had nothing to keep and no
// peer for two sweeps.
func (s *server) sweep(ctx context.Context, idle context.CancelCauseFunc) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	empty := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for id, h := range s.conns {
			if !fusefs.Connected(h.dev) {
				h.close()
				delete(s.conns, id)
			}
		}
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 && s.peers.Load() == 0 {
			empty++
		} else {
			empty = 0
		}
		if empty >= 2 && idle != nil {
			idle(errIdle)
			return
		}
	}
}
