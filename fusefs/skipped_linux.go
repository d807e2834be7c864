//go:build linux

package fusefs

import (
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// skippedRequests wraps go-fuse's node bridge so that the kernel stops
// sending the requests it can do without: OPENDIR/RELEASEDIR always, OPEN
// and FLUSH under accounting "reads", xattr requests once a layer is known
// to have no opaque directory.
//
// For directories: answering OPENDIR with ENOSYS tells a kernel that
// offers FUSE_NO_OPENDIR_SUPPORT (Linux >= 5.1) to stop sending them for
// the whole mount; it then caches listings (FOPEN_CACHE_DIR) and
// sends READDIR(PLUS) with file handle 0. Each such request is served here
// through a handle opened and released around it, so go-fuse's READDIRPLUS
// lookups work unchanged; the node keeps its translated listing, so that
// handle costs one open of the backing directory, not a read of it.
//
// Without this, a warm walk pays two round trips per directory although
// the kernel answers everything else from its caches.
type skippedRequests struct {
	fuse.RawFileSystem
	// enabled is set once the mount is up and the kernel has offered
	// FUSE_NO_OPENDIR_SUPPORT.
	enabled atomic.Bool
	// noOpenFiles asks for the same for files (accounting "reads"), and
	// noOpen is set once the kernel has offered FUSE_NO_OPEN_SUPPORT: it
	// then opens files itself, keeps their page cache across opens and
	// sends READs without a handle (see node.Read).
	noOpenFiles bool
	noOpen      atomic.Bool
	// noXattrs is set (by the Manager) once the layer is known to have
	// no opaque directory: xattr requests are then answered ENOSYS, and
	// the kernel stops sending them (see layerShape).
	noXattrs *atomic.Bool
}

// GetXAttr answers ENOSYS once noXattrs is set.
func (d *skippedRequests) GetXAttr(cancel <-chan struct{}, header *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if d.noXattrs != nil && d.noXattrs.Load() {
		return 0, fuse.ENOSYS
	}
	return d.RawFileSystem.GetXAttr(cancel, header, attr, dest)
}

// ListXAttr answers ENOSYS once noXattrs is set.
func (d *skippedRequests) ListXAttr(cancel <-chan struct{}, header *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if d.noXattrs != nil && d.noXattrs.Load() {
		return 0, fuse.ENOSYS
	}
	return d.RawFileSystem.ListXAttr(cancel, header, dest)
}

// Open answers ENOSYS once noOpen is on, so that the kernel stops asking.
func (d *skippedRequests) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if d.noOpen.Load() {
		return fuse.ENOSYS
	}
	return d.RawFileSystem.Open(cancel, in, out)
}

// Flush answers ENOSYS: the kernel then stops sending FLUSH for the
// mount, a synchronous round trip on every close of a file that a
// read-only filesystem has nothing to flush for.
func (d *skippedRequests) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}

// OpenDir answers ENOSYS once enabled, so that the kernel stops asking.
func (d *skippedRequests) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if d.enabled.Load() {
		return fuse.ENOSYS
	}
	return d.RawFileSystem.OpenDir(cancel, in, out)
}

// ReadDir serves a handle-less READDIR through a short-lived handle.
func (d *skippedRequests) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return d.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status { return d.RawFileSystem.ReadDir(cancel, in, out) })
}

// ReadDirPlus serves a handle-less READDIRPLUS through a short-lived
// handle.
func (d *skippedRequests) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return d.withHandle(cancel, in, func(in *fuse.ReadIn) fuse.Status { return d.RawFileSystem.ReadDirPlus(cancel, in, out) })
}

func (d *skippedRequests) withHandle(cancel <-chan struct{}, in *fuse.ReadIn, fn func(*fuse.ReadIn) fuse.Status) fuse.Status {
	if in.Fh != 0 {
		return fn(in) // opened before OPENDIR was turned off
	}
	var oo fuse.OpenOut
	if st := d.RawFileSystem.OpenDir(cancel, &fuse.OpenIn{InHeader: in.InHeader, Flags: syscall.O_RDONLY | syscall.O_DIRECTORY}, &oo); !st.Ok() {
		return st
	}
	withFh := *in
	withFh.Fh = oo.Fh
	st := fn(&withFh)
	d.RawFileSystem.ReleaseDir(&fuse.ReleaseIn{InHeader: in.InHeader, Fh: oo.Fh})
	return st
}

// enable turns OPENDIR (and, if asked, OPEN) off if the kernel supports
// that.
func (d *skippedRequests) enable(kernel *fuse.InitIn) {
	if kernel.Flags64()&fuse.CAP_NO_OPENDIR_SUPPORT != 0 {
		d.enabled.Store(true)
	}
	if d.noOpenFiles && kernel.Flags64()&fuse.CAP_NO_OPEN_SUPPORT != 0 {
		d.noOpen.Store(true)
	}

}
