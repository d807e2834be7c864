//go:build linux

package fusefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

// Request sizes. The kernel sizes requests by three values: max_write
// (INIT), the largest WRITE it sends, and so the size of the buffer a
// server must offer each read(2) of /dev/fuse (it refuses smaller ones);
// max_pages (INIT, with FUSE_MAX_PAGES; 32 pages without) and the max_read
// mount option, which bound a READ reply. go-fuse ties all three to
// MountOptions.MaxWrite, and sizes the buffer each of its reader
// goroutines holds while it waits on the kernel by it: with 1 MiB, every
// mounted layer kept several MiB of buffers, although a read-only
// filesystem never gets a WRITE and no other request it gets exceeds a
// page. So every mount negotiates smallMaxWrite. A mount whose reads go
// to the daemon gets its large READs another way: go-fuse negotiates
// without FUSE_MAX_PAGES (it would ask for the 2 pages of smallMaxWrite),
// and the reply to INIT that reaches the kernel is then given
// FUSE_MAX_PAGES with max_pages of maxReadReply (withMaxPages; the daemon
// sends it itself, see startServer), and the mount max_read =
// maxReadReply: a big file is read in READs of 1 MiB, a readahead window
// each, where the kernel's default of 32 pages took eight round trips.
// Their reply buffers come from go-fuse's pool per READ. A mount whose
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
	// daemon: its readahead window (readaheadKiB).
	maxReadReply = 1 << 20
	// smallMaxInflight is how many requests a passthrough mount serves at
	// once, as many as go-fuse allows on a machine of 2 or 3 cores.
	smallMaxInflight = 3
	// readsMaxInflight is how many requests a mount that serves reads
	// serves at once: the READs of as many readers, each a readahead
	// window of readaheadKiB.
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

// readaheadKiB is the readahead of mounts that serve reads in userspace,
// set through the mount's backing device info (the kernel caps what INIT
// asks at 128 KiB): one READ of maxReadReply.
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
// logs the stack: a panic is a bug, worth an error line. logger is the
// process's, never one from a request's context.
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
	dfd, err := beneath.Open(rootfd, "", unix.O_RDONLY|unix.O_DIRECTORY)
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
	pfd, err := beneath.Open(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW)
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

// The reply to INIT, after its 16-byte header: flags (low half) at 12,
// max_pages at 28 (struct fuse_init_out).
const (
	initOutFlags    = 16 + 12
	initOutMaxPages = 16 + 28
	capMaxPages     = 1 << 22 // FUSE_MAX_PAGES
)

// withMaxPages returns reply, a reply to INIT, with FUSE_MAX_PAGES set and
// max_pages at pages: the kernel then sends READs of up to that many pages
// (and max_read). A reply too short to hold them is returned as it is.
func withMaxPages(reply []byte, pages uint16) []byte {
	if len(reply) < initOutMaxPages+2 {
		return reply
	}
	out := bytes.Clone(reply)
	binary.LittleEndian.PutUint32(out[initOutFlags:], binary.LittleEndian.Uint32(out[initOutFlags:])|capMaxPages)
	binary.LittleEndian.PutUint16(out[initOutMaxPages:], pages)
	return out
}

// maxPagesOf returns the max_pages a reply to INIT set with
// FUSE_MAX_PAGES, 0 if it did not.
func maxPagesOf(reply []byte) uint16 {
	if len(reply) < initOutMaxPages+2 || binary.LittleEndian.Uint32(reply[initOutFlags:])&capMaxPages == 0 {
		return 0
	}
	return binary.LittleEndian.Uint16(reply[initOutMaxPages:])
}
