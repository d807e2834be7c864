//go:build linux

package fusefs

import "os"

// owner maps the ownership of backing files to the one a mount reports.
// A server that does not run as root (a rootless daemon, mounting through
// fusermount3) reports files owned by root as its own: rootless containerd
// maps its user to root in the container's user namespace, where files
// owned by the real root would otherwise show as nobody (65534). It gives
// no access the server lacks: the server reads every file with its own
// rights, and the kernel checks the reported modes (default_permissions).
type owner struct {
	// squash is set when the server is not root; uid and gid replace 0.
	squash   bool
	uid, gid uint32
}

// ownerFor returns the mapping of a server running as euid:egid.
func ownerFor(euid, egid int) owner {
	if euid == 0 {
		return owner{}
	}
	return owner{squash: true, uid: uint32(euid), gid: uint32(egid)}
}

// processOwner is this process's mapping: its ids do not change.
var processOwner = ownerFor(os.Geteuid(), os.Getegid())

// apply returns the reported owner of a file owned by uid:gid.
func (o owner) apply(uid, gid uint32) (uint32, uint32) {
	if !o.squash {
		return uid, gid
	}
	if uid == 0 {
		uid = o.uid
	}
	if gid == 0 {
		gid = o.gid
	}
	return uid, gid
}
