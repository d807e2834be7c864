//go:build linux

package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	stdlog "log"
	"os"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// Mount serves layer read-only at mountpoint, an existing directory. It
// returns an error wrapping errdefs.ErrNotFound when the source lacks the
// layer, errdefs.ErrUnavailable when the source does not answer in time,
// and errdefs.ErrAlreadyExists when something else is mounted there.
// Mounting the same layer again at the same mountpoint is a no-op; any
// number of mountpoints may serve one layer. On error nothing is left
// mounted at mountpoint.
func (m *Manager) Mount(ctx context.Context, mountpoint string, layer digest.Digest) (err error) {
	mountpoint, err = cleanMountpoint(mountpoint)
	if err != nil {
		return err
	}
	done, err := m.reserve(mountpoint, layer)
	if err != nil || done {
		return err
	}
	var mt *mount
	defer func() { m.commit(mountpoint, mt) }()

	lctx, cancel := withDefaultTimeout(ctx, defaultLookupTimeout)
	dir, err := m.src.OpenLayer(lctx, layer)
	cancel()
	if err != nil {
		return fmt.Errorf("failed to mount layer %s: %w", layer, err)
	}
	defer dir.Close()
	if mounted, err := mountutil.IsMounted(mountpoint); err != nil {
		return fmt.Errorf("failed to mount layer %s: %w", layer, err)
	} else if mounted {
		return fmt.Errorf("failed to mount layer %s: %q is already a mountpoint: %w", layer, mountpoint, errdefs.ErrAlreadyExists)
	}
	served, reason, err := m.serve(ctx, dir, mountpoint, layer, nil)
	if err != nil {
		return fmt.Errorf("failed to mount layer %s at %q: %w", layer, mountpoint, err)
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up while we mounted: leave nothing behind.
		m.stop(context.WithoutCancel(ctx), served)
		return fmt.Errorf("failed to mount layer %s: %w", layer, err)
	}
	mt = served
	m.keep(ctx, mt)
	m.startPrefetch(layer, mt)

	entry := log.G(ctx).WithFields(log.Fields{
		"layer":      layer,
		"mountpoint": mountpoint,
		"mode":       mt.mode(),
		"accounting": m.cfg.accounting,
	})
	if m.cfg.accounting == AccountOpen && !mt.tree.passthrough.Load() {
		entry.WithField("reason", reason).Warn("FUSE passthrough not granted, serving reads in userspace")
	} else {
		entry.Info("layer mounted")
	}
	return nil
}

// serve mounts the layer root dir at mountpoint and starts its server, or,
// given adopt, serves that mounted connection again. reason says why
// passthrough is off, if it is. dir stays the caller's; adopt's files are
// taken.
func (m *Manager) serve(ctx context.Context, dir *os.File, mountpoint string, layer digest.Digest, adopt *Connection) (_ *mount, reason string, err error) {
	ls := m.state(layer)
	acct := ls.acct
	tree, root, err := newLayerTree(dir, layer, acct, m.cfg.cache)
	if err != nil {
		return nil, "", err
	}
	tree.pages = m.pages
	m.learnShape(ctx, layer, ls, tree.rootfd)
	logger := log.G(ctx).WithFields(log.Fields{"layer": layer, "mountpoint": mountpoint})
	opts := m.fsOptions(layer, acct)
	small := m.cfg.accounting == AccountOpen && m.passthroughKnown(tree.rootDev)
	setRequestSizes(&opts.MountOptions, small)

	mt := &mount{mountpoint: mountpoint, layer: layer, tree: tree, done: make(chan struct{})}
	var recs map[uint64]nodeRecord
	if adopt != nil {
		mt.journal, recs, err = openNodeJournal(adopt.Nodes)
		adopt.Nodes = nil
	} else {
		mt.journal, err = newNodeJournal()
	}
	if err != nil {
		unix.Close(tree.rootfd)
		return nil, "", err
	}
	raw := &skippedRequests{RawFileSystem: fs.NewNodeFS(root, opts), noOpenFiles: m.cfg.accounting == AccountReads, noXattrs: &ls.noXattrs}
	mt.ids = newKernelIDs(raw, mt.journal, recs)
	if adopt != nil {
		err = m.resume(ctx, mt, adopt, &opts.MountOptions)
	} else {
		err = m.mountNew(ctx, mt, opts, !small)
	}
	if err != nil {
		mt.journal.Close()
		unix.Close(tree.rootfd)
		return nil, "", err
	}
	go func() {
		defer close(mt.done)
		defer unix.Close(tree.rootfd)
		mt.server.Serve()
		m.serverExited(mt)
	}()
	if err := mt.server.WaitMount(); err != nil {
		m.stop(ctx, mt)
		return nil, "", err
	}
	if mt.dev != nil && !m.cfg.noSelfAccess && adopt == nil {
		if err := pollOwnMount(mountpoint); err != nil {
			logger.WithError(err).Debug("cannot turn poll off on the mount")
		}
	}
	raw.enable(mt.server.KernelSettings())
	reason = fmt.Sprintf("accounting is %q", m.cfg.accounting)
	if m.cfg.accounting == AccountOpen {
		reason = probePassthrough(mt.server, tree.rootfd)
		tree.passthrough.Store(reason == "")
		m.notePassthrough(tree.rootDev, reason == "")
		if reason != "" && small {
			reason += fmt.Sprintf(" (and this mount reads at most %d bytes a request)", opts.MaxWrite)
		}
	}
	if !tree.passthrough.Load() {
		if err := setReadahead(mountpoint, readaheadKiB); err != nil {
			logger.WithError(err).Debug("cannot raise the readahead of the mount")
		}
	}
	return mt, reason, nil
}

// fsOptions returns the go-fuse options of a mount of layer.
func (m *Manager) fsOptions(layer digest.Digest, acct *account) *fs.Options {
	entryTO, attrTO, negTO := m.cfg.entryTimeout, m.cfg.attrTimeout, m.cfg.negTO
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			FsName: FsNamePrefix + layer.String(),
			Name:   fuseName,
			// Containers run as any uid; default_permissions makes the
			// kernel check modes, since this server opens as root.
			AllowOther: true,
			Options:    []string{"ro", "default_permissions"},
			// Without fusermount as root. nosuid is left off: a layer
			// viewed through a plain bind mount must keep its setuid
			// binaries working.
			DirectMount:      true,
			DirectMountFlags: unix.MS_RDONLY | unix.MS_NODEV,
			// overlayfs stacks on this mount: passthrough backing files
			// must sit on a filesystem that is not stacked itself.
			MaxStackDepth: 1,
			// Symlinks never change: let the kernel keep their targets.
			EnableSymlinkCaching: true,
			DisableSplice:        true,
			Debug:                m.cfg.debug,
			// Not the Mount's logger: requests come long after its
			// context (and the fields of the call that made it) is gone.
			PanicHandler: panicHandler(acct, log.L.WithFields(log.Fields{"layer": layer})),
		},
		EntryTimeout:    &entryTO,
		AttrTimeout:     &attrTO,
		NegativeTimeout: &negTO,
		// Present modes as they are: a 0000 file must not become 0644.
		NullPermissions: true,
	}
	if m.cfg.accounting != AccountOpen {
		opts.DisabledCapabilities |= fuse.CAP_PASSTHROUGH
	}
	if m.cfg.requestLog != nil {
		opts.MountOptions.Logger = stdlog.New(m.cfg.requestLog, "", 0)
	} else if !m.cfg.debug {
		// go-fuse logs oddities of single requests ("Unimplemented
		// opcode", splice fallbacks) with the standard logger: nothing
		// may be logged on the request path.
		opts.MountOptions.Logger = stdlog.New(io.Discard, "", 0)
	}
	return opts
}

// mountNew mounts mt's layer with mount(2), answers the kernel's INIT
// through go-fuse (see startServer), with READs of maxReadReply if
// bigReads, and keeps the connection for a successor. Without
// CAP_SYS_ADMIN (a rootless daemon) go-fuse mounts it through fusermount
// instead: that mount cannot outlive the daemon, and its READs stay at
// the kernel's default size.
func (m *Manager) mountNew(ctx context.Context, mt *mount, opts *fs.Options, bigReads bool) error {
	fd, kerr := mountKernel(mt.mountpoint, &opts.MountOptions, opts.DirectMountFlags)
	if kerr != nil {
		log.G(ctx).WithError(kerr).WithField("mountpoint", mt.mountpoint).
			Debug("mounting through go-fuse; this mount will not outlive the daemon")
		server, err := fuse.NewServer(mt.ids, mt.mountpoint, &opts.MountOptions)
		mt.server = server
		return err
	}
	dev := os.NewFile(uintptr(fd), "/dev/fuse")
	err := func() error {
		init, err := readInit(fd)
		if err != nil {
			return err
		}
		server, reply, at, err := startServer(ctx, mt.ids, init, &opts.MountOptions)
		if err != nil {
			return err
		}
		if bigReads {
			reply = withMaxPages(reply, uint16(maxReadReply/os.Getpagesize()))
		}
		if err := attachDevice(dev, at); err != nil {
			return fmt.Errorf("attach FUSE device: %w", err)
		}
		if err := writeDevice(dev, reply); err != nil {
			return fmt.Errorf("answer INIT: %w", err)
		}
		mt.server, mt.dev, mt.init, mt.initReply, mt.at = server, dev, init, reply, at
		return nil
	}()
	if err != nil {
		dev.Close()
		_ = mountutil.Unmount(mt.mountpoint)
	}
	return err
}

// resume serves c, a connection initialised by another process, as mt.
func (m *Manager) resume(ctx context.Context, mt *mount, c *Connection, o *fuse.MountOptions) error {
	if !Connected(c.Device) {
		return fmt.Errorf("FUSE connection of %q is closed: %w", mt.mountpoint, errdefs.ErrNotFound)
	}
	server, reply, at, err := startServer(ctx, mt.ids, c.Init, o)
	if err != nil {
		return err
	}
	if pages := maxPagesOf(c.InitReply); pages > 0 {
		reply = withMaxPages(reply, pages)
	}
	if !bytes.Equal(reply, c.InitReply) {
		// Another build negotiated the connection with other options:
		// the kernel keeps what it agreed then.
		log.G(ctx).WithFields(log.Fields{"layer": mt.layer, "mountpoint": mt.mountpoint}).
			Warn("this build answers INIT differently from the one that mounted the layer; the mount keeps the settings it was mounted with")
	}
	if err := attachDevice(c.Device, at); err != nil {
		return fmt.Errorf("attach FUSE device: %w", err)
	}
	if err := resend(c.Device); err != nil {
		log.G(ctx).WithError(err).WithField("mountpoint", mt.mountpoint).
			Warn("the kernel cannot resend requests a dead server had read (needs Linux >= 6.9): their callers may wait until interrupted")
	}
	mt.server, mt.dev, mt.init, mt.initReply, mt.at = server, c.Device, c.Init, c.InitReply, at
	c.Device = nil
	return nil
}

// Connected reports whether the FUSE connection of dev, a /dev/fuse file,
// is alive: the kernel reports POLLERR on the device of an aborted or
// unmounted one. The poll asks for no event, so a queued request is
// neither reported nor consumed.
func Connected(dev *os.File) bool {
	rc, err := dev.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		n, err := unix.Poll(fds, 0)
		// Only a clear answer counts as dead: an error of poll itself says
		// nothing of the connection.
		alive = err != nil || n == 0 || fds[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) == 0
	})
	return alive
}
