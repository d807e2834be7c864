//go:build linux

package custody

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
)

// protocolVersion is sent with every request; a custody refuses others.
const protocolVersion = 1

// maxMessage bounds one packet (a connection's record is a few hundred
// bytes).
const maxMessage = 64 << 10

// message is a request or a reply.
type message struct {
	Version int    `json:"v"`
	Op      string `json:"op,omitempty"` // keep, release, list, ping
	ID      string `json:"id,omitempty"`
	Conn    *conn  `json:"conn,omitempty"`
	// Replies: Err is set on failure; a list reply is one message per
	// connection, then one with End set.
	Err string `json:"err,omitempty"`
	End bool   `json:"end,omitempty"`
}

// conn is a fusefs.Connection without its files, which travel as
// descriptors: the device first, then the node journal.
type conn struct {
	ID         string        `json:"id"`
	Mountpoint string        `json:"mountpoint"`
	Layer      digest.Digest `json:"layer"`
	Init       []byte        `json:"init"`
	InitReply  []byte        `json:"init-reply"`
}

func toWire(c fusefs.Connection) *conn {
	return &conn{ID: c.ID, Mountpoint: c.Mountpoint, Layer: c.Layer, Init: c.Init, InitReply: c.InitReply}
}

// validate checks what a peer sent about a connection.
func (c *conn) validate() error {
	if c == nil || c.ID == "" || len(c.ID) > 64 || c.Mountpoint == "" || len(c.Mountpoint) > unix.PathMax {
		return errors.New("malformed connection record")
	}
	if err := c.Layer.Validate(); err != nil {
		return fmt.Errorf("connection record: %w", err)
	}
	if len(c.Init) == 0 || len(c.Init) > 4096 || len(c.InitReply) == 0 || len(c.InitReply) > 4096 {
		return errors.New("connection record: malformed INIT exchange")
	}
	return nil
}

// send writes m in one packet with files as SCM_RIGHTS.
func send(uc *net.UnixConn, m message, files ...*os.File) error {
	m.Version = protocolVersion
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = uc.WriteMsgUnix(b, oob, nil)
	return err
}

// receive reads one packet and the descriptors that came with it, as
// close-on-exec files. A packet of another protocol version is an error
// (its descriptors are closed).
func receive(uc *net.UnixConn) (message, []*os.File, error) {
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return message{}, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return message{}, nil, fmt.Errorf("control message: %w", err)
		}
		for _, cm := range msgs {
			fds, err := unix.ParseUnixRights(&cm)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "passed descriptor"))
			}
		}
	}
	fail := func(err error) (message, []*os.File, error) {
		closeAll(files)
		return message{}, nil, err
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return fail(errors.New("message truncated"))
	}
	if n == 0 {
		return fail(net.ErrClosed)
	}
	var m message
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return fail(fmt.Errorf("malformed message: %w", err))
	}
	if m.Version != protocolVersion {
		return fail(fmt.Errorf("protocol version %d, want %d", m.Version, protocolVersion))
	}
	return m, files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
