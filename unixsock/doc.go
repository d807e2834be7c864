// Package unixsock creates the unix sockets of the daemon (its gRPC API,
// its admin endpoints) and of the separate FUSE server: 0600 from the
// moment they exist, never replacing anything but a stale socket. It knows
// nothing of what is served on them.
package unixsock
