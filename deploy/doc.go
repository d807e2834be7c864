// Package deploy holds the files that deploy cvmfs-snapshotter on a node
// (the systemd unit, the daemon's sample configuration, containerd
// snippets, the Kubernetes manifest) and the tests that check them against
// the daemon itself. It has no code of its own: the daemon's image is
// built by the command in deploy/image.
package deploy
