// Package testutil holds helpers that unit, root and end-to-end tests share:
// requirement gates (RequiresRoot, RequiresFUSE, RequiresBinary) that skip a
// test naming what is missing, and fail it instead when CI=true (unless
// CVMFS_UNIT_ONLY); deterministic layer tarballs (Layer, Entry and its
// constructors) and images (Image); an in-process registry that records
// the blobs it served (Registry); and a mount sweeper for temporary
// directories.
//
// Production code never imports it, and it imports nothing of the project
// but mountutil, so that any package's unit tests can use it.
package testutil
