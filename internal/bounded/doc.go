// Package bounded runs calls that can block for as long as the kernel
// pleases (a stat on a stuck CVMFS client, a statfs through a FUSE mount
// whose server is stopped) so that the caller waits no longer than its
// context: the call runs in its own goroutine and is abandoned, not
// interrupted, when the context ends first.
//
// It is a leaf: it knows nothing of layers, mounts or snapshots.
package bounded
