//go:build linux

package fusefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Connection is what it takes to serve a mounted layer: its FUSE
// connection, the INIT exchange that opened it, and the journal of the node
// IDs given to the kernel. A Custody keeps it while no daemon serves the
// mount; a successor serves it again with Manager.Adopt.
//
// The kernel ends a FUSE connection (every request then fails with
// ENOTCONN) only when the last descriptor of its /dev/fuse file is closed.
// A connection kept by another process therefore outlives the daemon: the
// requests of running containers wait in the kernel until a successor
// serves them.
type Connection struct {
	// ID names the connection (a mountpoint may be mounted again while
	// a lazily detached mount of it is still served).
	ID         string
	Mountpoint string
	Layer      digest.Digest
	// Device is the mount's /dev/fuse file, Nodes its node journal.
	Device, Nodes *os.File
	// Init is the INIT request as the kernel sent it (header and body);
	// InitReply the reply it got.
	Init, InitReply []byte
}

// Close closes the Connection's files.
func (c *Connection) Close() error {
	return errors.Join(closeFile(c.Device), closeFile(c.Nodes))
}

func closeFile(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}

// Custody keeps the connections of a Manager's mounts while no daemon
// serves them. Keep takes copies of c's files (the caller keeps its own);
// Release forgets a connection whose mount is gone (unmounted, its
// server exited). Both
// are called outside the request path.
type Custody interface {
	Keep(ctx context.Context, c Connection) error
	Release(ctx context.Context, id string) error
}

// WithCustody hands every mount's Connection to c as soon as it is served,
// and releases it when the mount is unmounted: the mounts then outlive the
// daemon, and Close leaves them mounted (see Manager.Close).
func WithCustody(c Custody) Opt {
	return func(cfg *config) error {
		cfg.custody = c
		return nil
	}
}

// initBufSize is the buffer for the INIT request: the kernel refuses a read
// of /dev/fuse into less than FUSE_MIN_READ_BUFFER (8 KiB) and INIT is
// small.
const initBufSize = 64 << 10

// readInit reads the INIT request the kernel queued when fd was mounted.
func readInit(fd int) ([]byte, error) {
	buf := make([]byte, initBufSize)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read INIT: %w", err)
		}
		if n < int(inHeaderSize) || binary.LittleEndian.Uint32(buf[4:8]) != opInit {
			return nil, fmt.Errorf("first request is not INIT (%d bytes)", n)
		}
		return bytes.Clone(buf[:n]), nil
	}
}

const (
	opInit       = 26
	inHeaderSize = 40
	// notifyResend is FUSE_NOTIFY_RESEND (Linux >= 6.9): the kernel puts
	// the requests read but never answered (by a process that died) back
	// in the queue, for the new server to read again.
	notifyResend = 7
)

// startServer starts go-fuse on a connection whose INIT is init, without
// go-fuse reading it from the device: it gets INIT from one end of a
// socket pair, answers there, and the device then takes that descriptor's
// number (dup3), so that every later request comes from the kernel. This is
// how a successor serves an already initialised connection (go-fuse has no
// API for it), and a new mount goes the same way so that its INIT exchange
// is known. It returns the server (not yet serving), the reply it gave to
// INIT, and the descriptor number go-fuse owns.
func startServer(ctx context.Context, raw fuse.RawFileSystem, init []byte, opts *fuse.MountOptions) (*fuse.Server, []byte, int, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, -1, fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := pair[1], pair[0]
	defer unix.Close(ours)
	if _, err := unix.Write(ours, init); err != nil {
		unix.Close(theirs)
		return nil, nil, -1, fmt.Errorf("replay INIT: %w", err)
	}
	o := *opts
	o.DirectMount = false
	server, err := fuse.NewServer(raw, "/dev/fd/"+strconv.Itoa(theirs), &o)
	if err != nil {
		// go-fuse closed theirs if it got as far as INIT; closing again
		// is harmless only before it did.
		return nil, nil, -1, fmt.Errorf("start FUSE server: %w", err)
	}
	if err := prefaultReadBuffers(server); err != nil {
		log.G(ctx).WithError(err).Warn("cannot prefault go-fuse's read buffers: a kill -9 of this process may fail a request in flight with EIO")
	}
	reply := make([]byte, 4096)
	n, err := unix.Read(ours, reply)
	if err != nil {
		return nil, nil, -1, fmt.Errorf("read INIT reply: %w", err)
	}
	return server, reply[:n], theirs, nil
}

// attachDevice makes descriptor number at (go-fuse's) refer to the FUSE
// device dev.
func attachDevice(dev *os.File, at int) error {
	rc, err := dev.SyscallConn()
	if err != nil {
		return err
	}
	var derr error
	if err := rc.Control(func(fd uintptr) { derr = unix.Dup3(int(fd), at, unix.O_CLOEXEC) }); err != nil {
		return err
	}
	return derr
}

// writeDevice writes one message to the FUSE device dev.
func writeDevice(dev *os.File, msg []byte) error {
	rc, err := dev.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for {
			_, werr = unix.Write(int(fd), msg)
			if werr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return werr
}

// resend asks the kernel to queue again the requests of dev that a dead
// predecessor read and never answered (without it their callers wait
// forever). Kernels before 6.9 refuse it.
func resend(dev *os.File) error {
	msg := make([]byte, 16)
	binary.LittleEndian.PutUint32(msg[0:4], 16)
	binary.LittleEndian.PutUint32(msg[4:8], notifyResend)
	return writeDevice(dev, msg)
}

// pollHackName is the name go-fuse answers itself at the root (see
// pollOwnMount).
const pollHackName = ".go-fuse-epoll-hack"

// pollOwnMount makes the kernel learn that the mount does not support
// poll, before this process opens anything on it: Go's runtime registers
// every file it opens with epoll, and an epoll of a FUSE file asks the
// server, which can deadlock a process that serves the mount itself (go-fuse
// does the same after mounting; it cannot here, as it did not mount).
func pollOwnMount(mountpoint string) error {
	fd, err := unix.Open(filepath.Join(mountpoint, pollHackName), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}
	_, err = unix.Poll(fds, 0)
	return err
}
