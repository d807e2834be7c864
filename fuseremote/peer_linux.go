//go:build linux

package fuseremote

import (
	"context"
	"net"

	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
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
		cred, err := unixsock.PeerCred(c)
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
