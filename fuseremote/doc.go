// Package fuseremote lets the FUSE layer mounts live in a process of their
// own, so that they outlive restarts of the snapshotter daemon and running
// containers keep reading their layers.
//
// Serve is that process's run: a Server of a fusefs.Manager over HTTP on a
// unix socket made by unixsock.Listen, for the daemon whose root it was
// given and for nobody else (it mounts only at that root's snapshot fs
// directories, unmounts only its own mounts, and answers only its own
// uid), with its pid in PIDFile(root); when it stops it unmounts
// everything. Client calls a Server: every call has a deadline, and tells a
// server that is gone (ErrServerDown) from one that holds its socket but
// does not answer (ErrNoAnswer). Supervisor is the daemon's side: a Client
// that starts the server (detached) when it is gone and never replaces one
// that is alive. Client and Supervisor satisfy the snapshot package's
// LayerFS interface (structurally) and the metrics package's Source. The
// wire format is JSON; errdefs error classes survive the round trip.
//
// It knows nothing of containerd snapshots, nor of the command line or the
// configuration of the program that runs the server.
package fuseremote
