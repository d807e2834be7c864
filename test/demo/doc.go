// Command demo shows the product on one machine with no CVMFS and no
// network: it builds a local DUCC-shaped repository, a registry, containerd
// and cvmfs-snapshotter in a temporary directory, pulls an image whose
// layers are partly in the repository, runs a command in a container,
// prints where each layer came from and what the container read, and
// tears everything down. Run it as root: `make demo` or `go run ./test/demo`.
package main
