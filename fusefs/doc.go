// Package fusefs serves image layers read-only through in-process FUSE
// mounts (github.com/hanwen/go-fuse/v2), one server per mountpoint, over a
// layer directory found by a Source (a DUCC repository in production).
//
// What a mount presents, so that overlayfs stacks DUCC layers correctly:
//
//   - ".wh.<name>" appears as "<name>", a character device 0:0 (an overlayfs
//     whiteout); the marker itself is hidden. A real "<name>" in the same
//     directory wins over its whiteout.
//   - ".wh..wh..opq" makes its directory answer getxattr
//     "trusted.overlay.opaque" and "user.overlay.opaque" with "y"; the marker
//     is hidden. Whiteouts inside an opaque directory's subtree are dropped:
//     overlayfs merges nothing there, so it would list them as stray devices.
//   - ".cvmfscatalog" at the layer root (DUCC's nested-catalog marker) is
//     hidden, as is any other ".wh..wh." name at any depth. A
//     ".cvmfscatalog" below the root is the image's own file (CVMFS nests a
//     catalog there too) and is shown with its bytes.
//   - Every mutation answers EROFS. Every path is resolved beneath the layer
//     root without following symlinks; symlink targets are only returned.
//     The layer root itself comes from the Source as an open directory, so
//     no path to it is resolved again after the Source checked it.
//
// Reads use kernel FUSE passthrough when the kernel grants it (Linux >= 6.9
// and CAP_SYS_ADMIN): the daemon then sees opens but no reads. Accounting
// mode "bytes" turns passthrough off to count exact bytes and keeps the page
// cache across opens instead.
//
// Attributes, entries and directory listings are cached by the kernel for
// long (layers are immutable), and attributes also in a shared cache.Attrs
// keyed by layer digest and path. Directories are served without OPENDIR
// (FUSE_NO_OPENDIR_SUPPORT), so a warm walk sends nothing to the daemon.
// bench/fusefs.md has the figures against native and bind mounts.
//
// Each mount appears in /proc/self/mountinfo with source
// "cvmfs-layer:sha256:<hex>" (FsNamePrefix, LayerFromFsName) and type
// "fuse.cvmfs" (FsType), so that a restarted daemon can find, Check and
// Unmount the mounts of its predecessor. The mount is read-only, nodev,
// allow_other and default_permissions (the kernel checks modes: the server
// itself opens everything as root).
//
// Where things are: manager.go holds the Manager, its table of mounts and
// the mount record; mount_linux.go mounts a layer and starts its server;
// serving_linux.go the serving details (request sizes, readahead, the
// passthrough probe, the panic handler); lifecycle_linux.go the life of a
// mount after that (Check, dead mounts, Unmount, Close); removed_linux.go
// finds the layers removed from the store while mounted; node.go, dir.go,
// file.go, xattr.go and whiteout.go what a mount presents.
//
// fusefs knows nothing of containerd snapshots: its Manager satisfies the
// snapshot package's LayerFS interface structurally. Nothing is logged on the
// request path.
package fusefs
