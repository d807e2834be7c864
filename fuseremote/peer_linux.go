//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// peerListener accepts only connections whose peer runs as uid. The socket's
// mode keeps others out already; this holds even if that mode is loosened
// or the socket is reached through a descriptor passed on.
type peerListener struct {
	net.Listener
	uid int
	ctx context.Context // for logs only
}

// Accept returns the next connection from an allowed peer. Others are
// closed unanswered and logged.
func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cred, err := peerCred(c)
		if err == nil && int(cred.Uid) == l.uid {
			return c, nil
		}
		entry := log.G(l.ctx).WithField("allowed-uid", l.uid)
		if err != nil {
			entry = entry.WithError(err)
		} else {
			entry = entry.WithField("uid", cred.Uid).WithField("pid", cred.Pid)
		}
		entry.Warn("FUSE server refused a connection from another user")
		c.Close()
	}
}

// peerCred returns the credentials of the process at the other end of c,
// as they were when it connected.
func peerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("SO_PEERCRED: %w", cerr)
	}
	if cred == nil {
		return nil, errors.New("SO_PEERCRED: no credentials")
	}
	return cred, nil
}
