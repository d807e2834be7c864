//go:build linux

package fusefs

import (
	"context"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
)

var _ = (fs.NodeGetxattrer)((*node)(nil))

// Getxattr answers the opaque attributes of an opaque directory, and
// ENODATA for every other attribute: a layer presents no other. DUCC
// stores none (ingest drops them), and what the backing tree carries is
// the repository's own (CVMFS's magic attributes), not the image's. That
// is also what lets a layer with no opaque directory answer ENOSYS before
// a request reaches here (see layerShape).
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	a := n.tree.acct.begin(nil)
	if n.opaque && !n.whiteout && isOpaqueXattr(attr) {
		return copyOut(dest, []byte("y"))
	}
	return 0, a.missing(syscall.ENODATA)
}

var _ = (fs.NodeListxattrer)((*node)(nil))

// Listxattr lists the opaque attributes of an opaque directory, and
// nothing for any other entry (see Getxattr).
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	n.tree.acct.begin(nil)
	var list []byte
	if n.opaque && !n.whiteout {
		for _, x := range opaqueXattrs {
			list = append(append(list, x...), 0)
		}
	}
	return copyOut(dest, list)
}

// copyOut implements the xattr size protocol: an empty dest asks for the
// size, a short one is ERANGE.
func copyOut(dest, val []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(val)), 0
	}
	if len(dest) < len(val) {
		return uint32(len(val)), syscall.ERANGE
	}
	return uint32(copy(dest, val)), 0
}
