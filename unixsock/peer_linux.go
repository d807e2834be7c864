//go:build linux

package unixsock

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// PeerCred returns the credentials of the process at the other end of c,
// a unix socket connection, as they were when it connected (SO_PEERCRED).
// Servers that answer only their own user check them: the socket's mode
// keeps others out already, and this holds even if that mode is loosened
// or the socket is reached through a descriptor passed on.
func PeerCred(c net.Conn) (*unix.Ucred, error) {
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
