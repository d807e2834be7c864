// Package harness runs the product end to end for tests and the demo: in a
// temporary directory it starts an in-process registry, builds and pushes
// test images, writes a DUCC-shaped repository from them with the ingest
// code, and starts cvmfs-snapshotter and a real containerd (2.x built with
// go install, or Debian's 1.6) as child processes. Env pulls and runs
// containers through containerd's Go client and tears everything down in
// the order that leaves no mounts: containers, containerd, snapshotter,
// registry, then a lazy sweep of anything still mounted under the
// directory.
//
// Binaries come from $CVMFS_TEST_BIN (cvmfs-snapshotter, cvmfsctl; built
// into a temporary directory when unset) and $CVMFS_TEST_TOOLS
// (containerd2/bin; default <module>/_build/tools); containerd 1.6 is
// /usr/bin/containerd. Every image carries the static test/probe binary
// (BaseLayer), which reports what the container sees in the format of
// package treediff. Corpus and AppLayers are the fixture images.
//
// It must not be imported by production code.
package harness
