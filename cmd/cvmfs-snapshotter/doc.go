// Command cvmfs-snapshotter is a containerd proxy snapshotter that serves
// image layers from a CVMFS repository written by DUCC (unpacked.cern.ch)
// instead of downloading them.
//
// It only wires the packages together: flags and the TOML configuration
// (package config, which also maps its keys to each package's options), then
// constructors (the layer filesystem in layerfs.go: bind mounts, an
// in-process fusefs.Manager or a fuseremote.Supervisor of a separate FUSE
// server), the snapshotter on the gRPC socket and the admin and metrics
// endpoints (serve.go, http.go; the routes are package adminapi's), signals and the shutdown order. Its
// "fuse-server" subcommand (fuseserver.go) is the separate FUSE server:
// the same configuration, a fusefs.Manager, fuseremote.Serve.
//
// Beyond that it holds only the lock that keeps one daemon per root
// (lock_linux.go): what a layer, a mount, a socket or a snapshot is belongs
// to the packages.
package main
