// Package layerdigest validates the layer digests that arrive from outside
// (a Prepare's labels, a stored snapshot label, a query of the admin
// endpoints) before anything uses them as a key or a path component. The
// snapshotter, the layer store and the metrics endpoints share this one
// check.
//
// It is a leaf: it knows nothing of containerd, CVMFS or FUSE.
package layerdigest
