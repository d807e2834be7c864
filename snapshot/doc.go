// Package snapshot implements a containerd snapshots.Snapshotter that serves
// image layers from a read-only layer store instead of downloading them.
//
// It is built on containerd's storage.MetaStore, as containerd's overlay
// snapshotter is, with the on-disk layout <root>/snapshots/<id>/{fs,work}
// plus a db-id file that ties each directory to the metadata database that
// created it (Cleanup deletes no other).
// When containerd prepares a layer's extraction snapshot with the labels
// containerd.io/snapshot.ref and containerd.io/snapshot/cri.layer-digest,
// the snapshotter checks that the layer's diff ID, as the store records it
// (LayerDiffIDer), makes that chain on top of the parent's (chain.go: an
// image chooses the chain ID containerd asks for), asks its LayerFS to mount
// the layer on the snapshot's fs directory, commits it under the target
// name with the marker LabelRemote and answers ErrAlreadyExists, so
// containerd skips fetch and apply. Layers the store does not hold (or does
// not answer for in time, or whose chain does not check out) get ordinary
// writable snapshots and are pulled as usual. The marker lies in a label
// namespace only the snapshotter writes: callers' labels under it are
// dropped (labels.go); markers of earlier versions are migrated at start
// (migrate.go).
//
// The package knows nothing of FUSE, CVMFS paths or the repository layout:
// all of that sits behind the LayerFS interface.
package snapshot
