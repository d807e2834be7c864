//go:build linux

package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// staleProbe bounds the dial that tells a stale socket from a live one.
const staleProbe = time.Second

// Listen creates the server's unix socket at path (made absolute), mode
// 0600. Nobody but the owner can ever connect to it with a wider mode,
// whatever the umask: in a private directory (owned by this user, no access
// for group or others; a missing parent is created so, 0700) the socket is
// bound in place and restricted; elsewhere it is bound in a fresh 0700
// directory next to path, restricted there, then linked into place. When
// that directory cannot be made because the filesystem is full (ENOSPC,
// EDQUOT), the socket is bound in place if the umask denies group and
// others write access (connect needs it). Neither way replaces anything.
//
// A stale socket (nobody listening) at path is replaced. Anything else is
// left alone and reported: a socket someone listens on, even one that does
// not answer, is errdefs.ErrAlreadyExists; any other kind of file is
// errdefs.ErrInvalidArgument, as is a path Check refuses. Closing the listener removes the socket if it
// is still the one Listen made.
func Listen(path string) (net.Listener, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("socket %q: %w", path, err)
	}
	path = abs
	if err := Check(path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	if private(dir) {
		return listenInPlace(path)
	}
	tmp, err := os.MkdirTemp(dir, ".s")
	if err != nil {
		if (errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) && umaskDeniesWrite() {
			return listenInPlace(path)
		}
		return nil, fmt.Errorf("create socket: %w", err)
	}
	defer os.RemoveAll(tmp) // only the temporary name: the socket stays linked at path
	tmpSock := filepath.Join(tmp, "s")
	l, err := net.Listen("unix", tmpSock)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ul.Close()
		return nil, err
	}
	if err := os.Chmod(tmpSock, 0o600); err != nil {
		return fail(fmt.Errorf("restrict socket: %w", err))
	}
	if err := os.Link(tmpSock, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("socket %s appeared while creating it: %w", path, errdefs.ErrAlreadyExists))
		}
		return fail(fmt.Errorf("create socket %s: %w", path, err))
	}
	return listener(ul, path)
}

// listenInPlace binds the socket at path itself, then restricts it; the
// caller has made sure nobody else can connect before the chmod. bind never
// replaces an existing file.
func listenInPlace(path string) (net.Listener, error) {
	l, err := net.Listen("unix", path)
	if err != nil {
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("socket %s appeared while creating it: %w", path, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ul.Close()
		_ = os.Remove(path)
		return nil, fmt.Errorf("restrict socket: %w", err)
	}
	return listener(ul, path)
}

func listener(ul *net.UnixListener, path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		ul.Close()
		return nil, err
	}
	return &socketListener{UnixListener: ul, path: path, fi: fi}, nil
}

// private reports whether dir is owned by this user and closed to group and
// others: nobody else can reach a socket in it, whatever the socket's mode.
// (With POSIX ACLs the group bits are the mask, so 0 there grants nothing.)
func private(dir string) bool {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == os.Geteuid() && st.Mode&0o077 == 0
}

// umaskDeniesWrite reports whether the process umask clears group and
// others write bits, read from /proc (setting the umask to read it would
// race with other goroutines creating files).
func umaskDeniesWrite() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Umask:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			return err == nil && m&0o022 == 0o022
		}
	}
	return false
}

// removeStale removes a socket at path that nobody listens on, and refuses
// anything else that is there.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket (%s); left alone: %w", path, fi.Mode().Type(), errdefs.ErrInvalidArgument)
	}
	c, err := net.DialTimeout("unix", path, staleProbe)
	if err == nil {
		c.Close()
		return fmt.Errorf("%s is in use by a running server: %w", path, errdefs.ErrAlreadyExists)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		// EAGAIN (a full backlog) or a timeout: a server holds it but
		// does not accept, so it is not stale.
		return fmt.Errorf("%s is held by a server that does not accept (%v): %w", path, err, errdefs.ErrAlreadyExists)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// socketListener removes its socket file on Close, unless something else
// has replaced it.
type socketListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
}

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path) // gone already: nothing to clean
		}
	})
	return err
}
