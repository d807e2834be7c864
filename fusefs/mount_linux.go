//go:build linux

package fusefs

import (
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
	served, reason, err := m.serve(ctx, dir, mountpoint, layer)
	if err != nil {
		return fmt.Errorf("failed to mount layer %s at %q: %w", layer, mountpoint, err)
	}
	if err := ctx.Err(); err != nil {
		// The caller gave up while we mounted: leave nothing behind.
		m.stop(context.WithoutCancel(ctx), served)
		return fmt.Errorf("failed to mount layer %s: %w", layer, err)
	}
	mt = served

	entry := log.G(ctx).WithFields(log.Fields{
		"layer":      layer,
		"mountpoint": mountpoint,
		"mode":       mt.mode(),
		"accounting": m.cfg.accounting,
	})
	if m.cfg.accounting == AccountOpen && !mt.lfs.passthrough.Load() {
		entry.WithField("reason", reason).Warn("FUSE passthrough not granted, serving reads in userspace")
	} else {
		entry.Info("layer mounted")
	}
	return nil
}

// serve mounts the layer root dir at mountpoint and starts its server.
// reason says why passthrough is off, if it is. dir stays the caller's.
func (m *Manager) serve(ctx context.Context, dir *os.File, mountpoint string, layer digest.Digest) (*mount, string, error) {
	ls := m.state(layer)
	acct := ls.acct
	lfs, root, err := newLayerFS(dir, layer, acct, m.cfg.cache)
	if err != nil {
		return nil, "", err
	}
	m.learnShape(ctx, layer, ls, lfs.rootfd)
	logger := log.G(ctx).WithFields(log.Fields{"layer": layer, "mountpoint": mountpoint})
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
			Debug:                m.cfg.debug,
			// Not logger: requests come long after this Mount's context
			// (and the fields of the call that made it) is gone.
			PanicHandler: panicHandler(acct, log.L.WithFields(log.Fields{"layer": layer, "mountpoint": mountpoint})),
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
	small := m.cfg.accounting == AccountOpen && m.passthroughKnown(lfs.rootDev)
	setRequestSizes(&opts.MountOptions, small)
	if m.cfg.requestLog != nil {
		opts.MountOptions.Logger = stdlog.New(m.cfg.requestLog, "", 0)
	} else if !m.cfg.debug {
		// go-fuse logs oddities of single requests ("Unimplemented
		// opcode", splice fallbacks) with the standard logger: nothing
		// may be logged on the request path.
		opts.MountOptions.Logger = stdlog.New(io.Discard, "", 0)
	}
	raw := &noOpendir{RawFileSystem: fs.NewNodeFS(root, opts), noOpenFiles: m.cfg.accounting == AccountReads, noXattrs: &ls.noXattrs}
	serveAt := mountpoint
	if m.cfg.noSelfAccess {
		if fd, kerr := mountKernel(mountpoint, &opts.MountOptions, opts.DirectMountFlags); kerr == nil {
			serveAt = fmt.Sprintf("/dev/fd/%d", fd)
			opts.MountOptions.DirectMount = false
		} else {
			logger.WithError(kerr).Debug("mounting through go-fuse")
		}
	}
	server, err := fuse.NewServer(raw, serveAt, &opts.MountOptions)
	if err != nil {
		unix.Close(lfs.rootfd)
		if serveAt != mountpoint {
			_ = mountutil.Unmount(mountpoint)
		}
		return nil, "", err
	}
	mt := &mount{mountpoint: mountpoint, layer: layer, lfs: lfs, server: server, done: make(chan struct{})}
	go func() {
		defer close(mt.done)
		defer unix.Close(lfs.rootfd)
		server.Serve()
	}()
	if err := server.WaitMount(); err != nil {
		m.stop(ctx, mt)
		return nil, "", err
	}
	raw.enable(server.KernelSettings())
	reason := fmt.Sprintf("accounting is %q", m.cfg.accounting)
	if m.cfg.accounting == AccountOpen {
		reason = probePassthrough(server, lfs.rootfd)
		lfs.passthrough.Store(reason == "")
		m.notePassthrough(lfs.rootDev, reason == "")
		if reason != "" && small {
			reason += fmt.Sprintf(" (and this mount reads at most %d bytes a request)", opts.MaxWrite)
		}
	}
	if !lfs.passthrough.Load() {
		if err := setReadahead(mountpoint, readaheadKiB); err != nil {
			logger.WithError(err).Debug("cannot raise the readahead of the mount")
		}
	}
	return mt, reason, nil
}
