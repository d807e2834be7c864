// Package bindmount serves layers as read-only bind mounts of their
// directory in the layer store: the original proof of concept's way, kept as
// a baseline and an option.
//
// Its limitation: the layer is shown exactly as stored, so DUCC's verbatim
// OCI whiteout files (.wh.<name>, .wh..wh..opq) are not turned into
// overlayfs whiteouts. Deletions and opaque directories of upper layers do
// not hide lower files, and the marker files show up in the container.
// The fusefs package does not have this limitation.
package bindmount
