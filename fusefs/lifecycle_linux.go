//go:build linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// checkTimeout bounds Check when the caller's context has no deadline.
const checkTimeout = 5 * time.Second

// Check reports whether the mount at mountpoint is alive. A mount this
// Manager serves is alive while its server runs; any other (one left by a
// previous daemon) is probed with a statfs through it, which reaches its
// server (the kernel caches no statfs). It returns nil for a
// live FUSE mount, an error wrapping errdefs.ErrUnavailable for a dead one
// (server gone: ENOTCONN) or one that does not answer in time, and
// errdefs.ErrNotFound when no FUSE filesystem is mounted there. It works
// for any mountpoint, including mounts left by a previous daemon. For a
// mount it serves, it also looks for the layer in the Source (see
// probeRemoved): an error wrapping errdefs.ErrFailedPrecondition says the
// store no longer holds the layer (the mount is left as it is: running
// containers keep what they hold), and one wrapping ErrUnavailable that
// the store holds another copy of it than the one mounted.
func (m *Manager) Check(ctx context.Context, mountpoint string) error {
	mountpoint, err := cleanMountpoint(mountpoint)
	if err != nil {
		return err
	}
	// A mount this Manager serves is checked in process: the daemon never
	// makes syscalls through its own mounts, because a process killed while
	// one is in flight waits for its own (dead) server forever and can never
	// exit. Its server loop ends when the mount goes away.
	m.mu.Lock()
	mt := m.mounts[mountpoint]
	m.mu.Unlock()
	if mt != nil {
		select {
		case <-mt.done:
			return fmt.Errorf("layer mount at %q: its server has stopped: %w", mountpoint, errdefs.ErrUnavailable)
		default:
			return m.probeRemoved(ctx, mt)
		}
	}
	ctx, cancel := withDefaultTimeout(ctx, checkTimeout)
	defer cancel()
	st, err := statfsContext(ctx, mountpoint)
	switch {
	case err == nil && st.Type == fuseSuperMagic:
		return nil
	case err == nil:
		return fmt.Errorf("no layer is mounted at %q: %w", mountpoint, errdefs.ErrNotFound)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("mountpoint %q: %w: %w", mountpoint, err, errdefs.ErrNotFound)
	case isDeadMount(err):
		return fmt.Errorf("layer mount at %q is dead: %w: %w", mountpoint, err, errdefs.ErrUnavailable)
	default:
		return fmt.Errorf("layer mount at %q: %w: %w", mountpoint, err, errdefs.ErrUnavailable)
	}
}

// Unmount removes the mount at mountpoint and stops its server: a plain
// unmount first, a lazy one (MNT_DETACH) if it is busy or dead, never
// MNT_FORCE (on CVMFS it can unmount the repository itself). Nothing
// mounted there is not an error. It also removes mounts this Manager did
// not make, such as those of a previous daemon.
func (m *Manager) Unmount(ctx context.Context, mountpoint string) error {
	mountpoint, err := cleanMountpoint(mountpoint)
	if err != nil {
		return err
	}
	mt := m.forget(mountpoint)
	if mt == nil {
		if err := mountutil.Unmount(mountpoint); err != nil {
			return fmt.Errorf("failed to unmount %q: %w", mountpoint, err)
		}
		return nil
	}
	if err := m.stop(ctx, mt); err != nil {
		m.commit(mountpoint, mt) // still mounted: keep serving it
		return fmt.Errorf("failed to unmount layer %s at %q: %w", mt.layer, mountpoint, err)
	}
	return nil
}

// Close unmounts every mount the Manager serves and waits (bounded by ctx
// and a few seconds) for their servers to exit. With a custody (see
// WithCustody) it leaves every mount the custody keeps mounted instead: its
// requests wait in the kernel for the next daemon, which serves them
// (Adopt) as soon as it starts; the caller is expected to exit. Later
// Mounts fail. Close is idempotent.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	// No walk starts once closed; the running one stops at its next
	// directory, and is waited for after the unmounts.
	m.walkCancel()
	m.pages.close()
	m.mu.Lock()
	var mps []string
	for mp, mt := range m.mounts {
		if mt != nil && (m.cfg.custody == nil || mt.dev == nil) {
			mps = append(mps, mp)
		}
	}
	m.mu.Unlock()

	err := mountutil.UnmountEach(ctx, mps, m.Unmount)

	m.mu.Lock()
	stopped := m.stopped
	m.stopped = nil
	m.mu.Unlock()
	ctx, cancel := withDefaultTimeout(ctx, closeTimeout)
	defer cancel()
	m.waitWalks(ctx)
	for _, mt := range stopped {
		select {
		case <-mt.done:
		case <-ctx.Done():
			log.G(ctx).WithFields(log.Fields{"layer": mt.layer, "mountpoint": mt.mountpoint}).
				Warn("FUSE server of a detached mount still busy at close")
		}
	}
	return err
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
	m.keepStopped(mt)
	return nil
}

// keepStopped adds mt, whose server outlived its unmount, to m.stopped for
// Close to wait for, and drops the servers there that have exited since:
// the list stays as long as the servers still busy, in a daemon (or
// separate FUSE server) that runs for months.
func (m *Manager) keepStopped(mt *mount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = append(slices.DeleteFunc(m.stopped, func(mt *mount) bool {
		select {
		case <-mt.done:
			return true
		default:
			return false
		}
	}), mt)
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

// waitWalks waits for the layer walks to end, at most stopTimeout and
// within ctx. A walk blocked in a syscall on a stuck layer store cannot be
// called back: it is left to end on its own (its descriptor is its own,
// and it only records what it learns).
func (m *Manager) waitWalks(ctx context.Context) {
	walked := make(chan struct{})
	go func() {
		m.walks.Wait()
		close(walked)
	}()
	ctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	select {
	case <-walked:
	case <-ctx.Done():
		log.G(ctx).Warn("a layer walk does not end (the layer store does not answer): closing without it")
	}
}
