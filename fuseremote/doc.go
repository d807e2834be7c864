// Package fuseremote lets the FUSE layer mounts live in a process of their
// own, so that they outlive restarts of the snapshotter daemon and running
// containers keep reading their layers.
//
// Server exposes a fusefs.Manager over HTTP on a unix socket made by unixsock.Listen,
// to the daemon whose root it was given and to nobody else: it mounts only
// at that root's snapshot fs directories, unmounts only its own mounts, and
// answers only its own uid. Client satisfies the snapshot package's LayerFS
// interface (structurally) and the metrics package's Source by calling it;
// every call has a deadline, and tells a server that is gone (ErrServerDown)
// from one that holds its socket but does not answer (ErrNoAnswer). The
// wire format is JSON; errdefs error classes survive the round trip.
//
// It knows nothing of containerd snapshots.
package fuseremote
