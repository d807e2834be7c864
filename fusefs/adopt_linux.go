//go:build linux

package fusefs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Adopt serves c, a layer mount whose server (a previous daemon) is gone,
// as if this Manager had mounted it: requests that waited meanwhile are
// served, and those the old server read but never answered are sent again
// by the kernel (Linux >= 6.9). Adopt takes c's files. It returns an error
// wrapping errdefs.ErrNotFound when the connection is closed (the mount is
// gone) or the layer source lacks the layer; the caller then decides what
// becomes of the mount.
func (m *Manager) Adopt(ctx context.Context, c Connection) (err error) {
	defer c.Close()
	mountpoint, err := cleanMountpoint(c.Mountpoint)
	if err != nil {
		return err
	}
	done, err := m.reserve(mountpoint, c.Layer)
	if err != nil {
		return err
	}
	if done {
		return fmt.Errorf("layer %s is already served at %q", c.Layer, mountpoint)
	}
	var mt *mount
	defer func() { m.commit(mountpoint, mt) }()
	lctx, cancel := withDefaultTimeout(ctx, defaultLookupTimeout)
	dir, err := m.src.OpenLayer(lctx, c.Layer)
	cancel()
	if err != nil {
		return fmt.Errorf("failed to take over layer %s at %q: %w", c.Layer, mountpoint, err)
	}
	defer dir.Close()
	served, _, err := m.serve(ctx, dir, mountpoint, c.Layer, &c)
	if err != nil {
		return fmt.Errorf("failed to take over layer %s at %q: %w", c.Layer, mountpoint, err)
	}
	served.id = c.ID
	mt = served
	log.G(ctx).WithFields(log.Fields{"layer": c.Layer, "mountpoint": mountpoint, "mode": mt.mode()}).
		Info("layer mount taken over")
	return nil
}

// keep hands mt's connection to the custody, if there is one.
func (m *Manager) keep(ctx context.Context, mt *mount) {
	if m.cfg.custody == nil || mt.dev == nil {
		return
	}
	if mt.id == "" {
		var b [12]byte
		_, _ = rand.Read(b[:])
		mt.id = hex.EncodeToString(b[:])
	}
	c := Connection{
		ID: mt.id, Mountpoint: mt.mountpoint, Layer: mt.layer,
		Device: mt.dev, Nodes: mt.journal.f, Init: mt.init, InitReply: mt.initReply,
	}
	if err := m.cfg.custody.Keep(ctx, c); err != nil {
		log.G(ctx).WithError(err).WithFields(log.Fields{"layer": mt.layer, "mountpoint": mt.mountpoint}).
			Warn("custody does not keep this mount: it will not outlive the daemon until the custody is back")
	}
}

// KeepAll hands the connection of every mount served now to the custody
// again (after the custody process was restarted, say).
func (m *Manager) KeepAll(ctx context.Context) {
	m.mu.Lock()
	var mts []*mount
	for _, mt := range m.mounts {
		if mt != nil {
			mts = append(mts, mt)
		}
	}
	m.mu.Unlock()
	for _, mt := range mts {
		m.keep(ctx, mt)
	}
}

// releaseTimeout bounds telling the custody that a connection is gone.
const releaseTimeout = 5 * time.Second

// serverExited runs when mt's server loop has returned: the mount is gone,
// so is its connection; the custody forgets it and its files are closed.
func (m *Manager) serverExited(mt *mount) {
	if m.cfg.custody != nil && mt.dev != nil && mt.id != "" {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		if err := m.cfg.custody.Release(ctx, mt.id); err != nil {
			log.G(ctx).WithError(err).WithFields(log.Fields{"layer": mt.layer, "mountpoint": mt.mountpoint}).
				Warn("custody did not release the connection of an unmounted layer")
		}
		cancel()
	}
	if mt.dev != nil {
		mt.dev.Close()
	}
	mt.journal.Close()
}

// quiesceWait is how long Quiesce lets requests already read finish.
const quiesceWait = 100 * time.Millisecond

// Quiesce readies the mounts the custody keeps for this process's exit:
// go-fuse's reader descriptor of each is pointed at an idle socket, so
// that no reader takes a request from the kernel any more, and Quiesce
// waits quiesceWait for the requests already taken. Why: Linux fails with
// EIO a request that it is copying to a server whose process is dying (the
// copy to the dead process's buffer fails); requests left in the kernel
// instead wait for the next daemon, which has the kernel send again those
// read here but not answered. Replies written after Quiesce are lost the
// same way, and sent again. Call it last, right before the process exits:
// the mounts are no longer served by this process.
func (m *Manager) Quiesce(ctx context.Context) {
	if m.cfg.custody == nil {
		return
	}
	m.mu.Lock()
	var mts []*mount
	for _, mt := range m.mounts {
		if mt != nil && mt.dev != nil && mt.at > 0 {
			mts = append(mts, mt)
		}
	}
	m.mu.Unlock()
	idle := 0
	for _, mt := range mts {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// Both ends stay open until the process exits: a read of the
		// idle end blocks, never returns end of file.
		if err := unix.Dup3(pair[0], mt.at, unix.O_CLOEXEC); err == nil {
			idle++
		}
	}
	if idle > 0 {
		select {
		case <-time.After(quiesceWait):
		case <-ctx.Done():
		}
	}
}
