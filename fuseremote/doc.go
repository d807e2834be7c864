// Package fuseremote lets the FUSE layer mounts live in a process of their
// own, so that they outlive restarts of the snapshotter daemon and running
// containers keep reading their layers.
//
// Server exposes a fusefs.Manager over HTTP on a unix socket; Client
// satisfies the snapshot package's LayerFS interface (structurally) and the
// metrics package's Source by calling it. The wire format is JSON; errdefs
// error classes survive the round trip.
//
// It knows nothing of containerd snapshots.
package fuseremote
