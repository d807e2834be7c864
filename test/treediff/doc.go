// Package treediff describes a filesystem tree as a container sees it
// (Walk: type, mode, owner, size, mtime, content hash, link target, rdev,
// link count, xattrs of every path) and compares two such trees (Diff).
// The e2e probe runs Walk inside containers; the tests Parse its output.
//
// It imports only the standard library and x/sys, so that the probe stays
// a small static binary.
package treediff
