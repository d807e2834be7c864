// Package ducc owns the on-disk layout of a DUCC-written CVMFS repository
// (unpacked.cern.ch and its peers): where a layer's unpacked tree and its
// metadata live, how to look a layer up without hanging on a stuck CVMFS
// client, and how to write the same layout for a local layer store.
//
// It knows nothing of containerd snapshots or of FUSE.
//
//	<root>/.layers/<hex[0:2]>/<hex>/layerfs/               the unpacked layer
//	<root>/.layers/<hex[0:2]>/<hex>/.metadata/layers.json  diff id, size, ...
//	<root>/.layers/<hex[0:2]>/<hex>/.metadata/origin.json  images that use it
//
// hex is the sha256 of the compressed (gzip) layer blob, the digest found in
// the image manifest. Every path below the root is resolved without
// following symlinks (OpenLayer): a symlinked layer is an error, not a way
// to a host directory.
package ducc
