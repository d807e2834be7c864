//go:build linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// mount is one served mountpoint.
type mount struct {
	mountpoint string
	layer      digest.Digest
	lfs        *layerFS
	server     *fuse.Server
	done       chan struct{} // closed when the server loop has exited
}

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

// mode names how reads are served, for logs.
func (mt *mount) mode() string {
	if mt.lfs.passthrough.Load() {
		return "passthrough"
	}
	return "userspace"
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
			PanicHandler:         panicHandler(acct, logger),
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

// Request sizes. The kernel sizes requests by three values: max_write
// (INIT), the largest WRITE it sends, and so the size of the buffer a
// server must offer each read(2) of /dev/fuse (it refuses smaller ones);
// max_pages (INIT, with FUSE_MAX_PAGES; 32 pages without) and the max_read
// mount option, which bound a READ reply. go-fuse ties all three to
// MountOptions.MaxWrite, and sizes the buffer each of its reader
// goroutines holds while it waits on the kernel by it: with 1 MiB, every
// mounted layer kept several MiB of buffers, although a read-only
// filesystem never gets a WRITE and no other request it gets exceeds a
// page. So every mount negotiates smallMaxWrite; a mount whose reads go to
// the daemon also turns FUSE_MAX_PAGES off and mounts with max_read =
// maxReadReply, so that its READs stay as large as the kernel's default
// (their reply buffers come from go-fuse's pool per READ). A mount whose
// reads bypass the daemon (passthrough) serves only metadata and keeps
// max_read and max_pages at smallMaxWrite.
//
// Every mount also bounds the requests it serves at once: go-fuse would
// otherwise keep up to GOMAXPROCS+1 idle readers, each with its buffer and
// OS thread, per mount (on a large node and many layers, a crash at Go's
// limit of 10,000 threads).
const (
	smallMaxWrite = 8 << 10
	// maxReadReply is the largest READ of a mount whose reads go to the
	// daemon: FUSE_DEFAULT_MAX_PAGES_PER_REQ pages, what the kernel uses
	// without FUSE_MAX_PAGES, and its default readahead window.
	maxReadReply = 128 << 10
	// smallMaxInflight is how many requests a passthrough mount serves at
	// once, as many as go-fuse allows on a machine of 2 or 3 cores.
	smallMaxInflight = 3
	// readsMaxInflight is how many requests a mount that serves reads
	// serves at once: one readahead window of readaheadKiB is this many
	// READs of maxReadReply, all in flight.
	readsMaxInflight = 8
)

// setRequestSizes sets the request sizes of a mount: small for a mount
// whose reads are expected to bypass the daemon (see smallMaxWrite).
func setRequestSizes(o *fuse.MountOptions, small bool) {
	o.MaxWrite = smallMaxWrite
	// go-fuse counts a request as its read buffer (smallMaxWrite, the
	// request header, a page for alignment) and its struct: between one
	// and two pages more than smallMaxWrite.
	perRequest := smallMaxWrite + 2*os.Getpagesize()
	if small {
		o.MaxInflightRequestBytes = smallMaxInflight * perRequest
		return
	}
	o.MaxInflightRequestBytes = readsMaxInflight * perRequest
	o.DisabledCapabilities |= fuse.CAP_MAX_PAGES
	// After go-fuse's own max_read (MaxWrite): the kernel takes the last.
	o.Options = append(o.Options, fmt.Sprintf("max_read=%d", maxReadReply))
}

// readaheadKiB is the readahead of mounts that serve reads in userspace.
// The kernel caps FUSE readahead at 128 KiB whatever the server asks; with
// 1 MiB, it sends the READs (of maxReadReply) of a window at once.
const readaheadKiB = 1024

// setReadahead sets the readahead of the FUSE mount at mountpoint through
// its backing device info, /sys/class/bdi/<major>:<minor>/read_ahead_kb.
func setReadahead(mountpoint string, kib int) error {
	major, minor, err := mountDev(mountpoint)
	if err != nil {
		return err
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", major, minor)
	return os.WriteFile(p, []byte(strconv.Itoa(kib)), 0)
}

// mountDev returns the device number of the filesystem mounted at
// mountpoint, the name of its backing device info. The daemon never makes
// requests through a mount it serves itself (killed in the middle of one,
// it could never exit): statx asked for no field and told not to sync
// (AT_STATX_DONT_SYNC) fills st_dev from the superblock and sends the FUSE
// server nothing. Reading the mount table instead would cost time that
// grows with the number of mounts.
func mountDev(mountpoint string) (major, minor uint32, err error) {
	var stx unix.Statx_t
	err = unix.Statx(unix.AT_FDCWD, mountpoint, unix.AT_SYMLINK_NOFOLLOW|unix.AT_NO_AUTOMOUNT|unix.AT_STATX_DONT_SYNC, 0, &stx)
	if err != nil {
		return 0, 0, &os.PathError{Op: "statx", Path: mountpoint, Err: err}
	}
	return stx.Dev_major, stx.Dev_minor, nil
}

// panicHandler answers a panicking request with EIO instead of letting it
// take the daemon down (go-fuse recovers it and calls this), counts it and
// logs the stack: a panic is a bug, worth an error line.
func panicHandler(acct *account, logger *log.Entry) func(any) fuse.Status {
	return func(r any) fuse.Status {
		acct.panics.Add(1)
		acct.fail(syscall.EIO)
		buf := make([]byte, 16<<10)
		buf = buf[:runtime.Stack(buf, false)]
		logger.Errorf("panic in FUSE handler, answered EIO: %v\n%s", r, buf)
		return fuse.EIO
	}
}

// probePassthrough returns "" if the kernel accepts backing files from this
// server, else why not. go-fuse falls back to userspace reads silently; the
// probe registers a backing file itself.
//
// The kernel's checks are per filesystem, not per file: CAP_SYS_ADMIN, and
// the backing file's filesystem stacked less deep than MaxStackDepth. So
// the probe needs a regular file of the layer's own filesystem (see
// probeFile). An anonymous memory file is only the last resort: it sits on
// tmpfs, which stacks on nothing, so it proves the capability but would
// pass a layer store on overlayfs that the kernel then refuses file by
// file.
func probePassthrough(server *fuse.Server, rootfd int) string {
	if server.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0 {
		return "kernel does not offer passthrough (needs Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH)"
	}
	fd, err := probeFile(rootfd)
	if err != nil {
		fd, err = unix.MemfdCreate("fusefs-passthrough-probe", unix.MFD_CLOEXEC)
		if err != nil {
			return fmt.Sprintf("cannot create a probe file: %v", err)
		}
	}
	defer unix.Close(fd)
	id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		return fmt.Sprintf("kernel refused a backing file: %v (passthrough needs CAP_SYS_ADMIN and a backing filesystem stacked less than MaxStackDepth)", errno)
	}
	server.UnregisterBackingFd(id)
	return ""
}

// probeNames bounds how many entries of the layer root probeFile examines
// when the catalog marker is not a regular file.
const probeNames = 64

// probeFile returns a read-only descriptor of a regular file directly in
// the layer root: the catalog marker, else the first regular file among
// the root's first entries. The layer is untrusted: a fifo of that name
// would block an open, a device node would be opened by root. So each
// candidate is opened O_PATH (no open of the file itself), checked with
// fstat, and only a regular file is reopened for reading, through
// /proc/self/fd: the very inode checked.
func probeFile(rootfd int) (int, error) {
	fd, err := openRegular(rootfd, catalogMarker)
	if err == nil {
		return fd, nil
	}
	dfd, err := openBeneath(rootfd, "", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	dir := os.NewFile(uintptr(dfd), "layer root")
	defer dir.Close()
	names, err := dir.Readdirnames(probeNames)
	if err != nil {
		return -1, err
	}
	for _, name := range names {
		if fd, err := openRegular(rootfd, name); err == nil {
			return fd, nil
		}
	}
	return -1, errors.New("no regular file at the layer root")
}

// openRegular opens name in dirfd for reading if, and only if, it is a
// regular file (see probeFile).
func openRegular(dirfd int, name string) (int, error) {
	pfd, err := openBeneath(dirfd, name, unix.O_PATH)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return -1, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return -1, fmt.Errorf("%s is not a regular file", name)
	}
	return unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
}

// How long an unmount waits for its server to exit (it does within
// milliseconds unless a lazily detached mount is still in use: its server
// then runs until the last user is gone), and how long Close waits for such
// servers.
const (
	stopTimeout  = time.Second
	closeTimeout = 5 * time.Second
)

// stop unmounts mt and waits a while for its server loop to exit. A server
// that outlives the wait is kept in m.stopped for Close.
func (m *Manager) stop(ctx context.Context, mt *mount) error {
	if err := mountutil.Unmount(mt.mountpoint); err != nil {
		return err
	}
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case <-mt.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	log.G(ctx).WithFields(log.Fields{"layer": mt.layer, "mountpoint": mt.mountpoint}).
		Warn("FUSE server still busy after lazy unmount; it stops when its last user leaves")
	m.mu.Lock()
	m.stopped = append(m.stopped, mt)
	m.mu.Unlock()
	return nil
}

// isDeadMount reports the errors of a FUSE mount whose server is gone.
func isDeadMount(err error) bool {
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) ||
		errors.Is(err, unix.EIO) || errors.Is(err, unix.ESTALE)
}

// fuseSuperMagic is statfs f_type of every FUSE mount.
const fuseSuperMagic = 0x65735546

// statfsContext runs statfs(path) bounded by ctx: a stuck server or CVMFS
// must not hang the caller. An abandoned statfs finishes on its own.
func statfsContext(ctx context.Context, path string) (unix.Statfs_t, error) {
	return bounded.Call(ctx, "statfs "+path, func() (unix.Statfs_t, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(path, &st); err != nil {
			return st, &os.PathError{Op: "statfs", Path: path, Err: err}
		}
		return st, nil
	})
}
