package snapshot

import (
	"fmt"
	"maps"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// Labels of the remote-snapshot protocol.
const (
	// LabelTarget names the committed snapshot containerd expects the
	// extraction snapshot to become.
	LabelTarget = snapshots.LabelSnapshotRef
	// LabelLayerDigest is the compressed layer digest from the image
	// manifest, added by the CRI plugin, the transfer service or a client
	// using snapshotters.AppendInfoHandlerWrapper.
	LabelLayerDigest = "containerd.io/snapshot/cri.layer-digest"
	// LabelRemote marks a committed snapshot served from the layer store.
	// Its value is the layer digest; restore re-mounts from it.
	LabelRemote = "containerd.io/snapshot/remote"
)

// remoteRequest is what a Prepare's labels ask of the remote path.
type remoteRequest struct {
	target string
	layer  digest.Digest
	// labels are the Prepare's labels, for the observer.
	labels map[string]string
}

// parseRemoteRequest extracts the target and layer digest of a Prepare.
// ok is false when the labels do not ask for a remote layer at all (no
// target or no layer digest). A malformed digest returns an error wrapping
// errdefs.ErrInvalidArgument; it never panics.
func parseRemoteRequest(labels map[string]string) (req remoteRequest, ok bool, err error) {
	target, hasTarget := labels[LabelTarget]
	raw, hasLayer := labels[LabelLayerDigest]
	if !hasTarget || target == "" || !hasLayer {
		return remoteRequest{}, false, nil
	}
	layer, err := layerdigest.Parse(raw)
	if err != nil {
		return remoteRequest{}, true, err
	}
	return remoteRequest{target: target, layer: layer, labels: labels}, true, nil
}

// checkRemoteLabelKept returns an error wrapping errdefs.ErrInvalidArgument
// if updating a snapshot whose labels are old with info and fieldpaths
// (with storage.UpdateInfo's semantics) would add, change or remove
// LabelRemote.
func checkRemoteLabelKept(old map[string]string, info snapshots.Info, fieldpaths []string) error {
	labels := maps.Clone(old)
	if len(fieldpaths) == 0 {
		labels = info.Labels
	}
	for _, p := range fieldpaths {
		if p == "labels" {
			labels = maps.Clone(info.Labels)
			continue
		}
		if key, ok := strings.CutPrefix(p, "labels."); ok {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[key] = info.Labels[key]
		}
	}
	was, had := old[LabelRemote]
	now, has := labels[LabelRemote]
	if had != has || was != now {
		return fmt.Errorf("label %s of snapshot %q is set by the snapshotter and cannot be updated (%q to %q): %w",
			LabelRemote, info.Name, was, now, errdefs.ErrInvalidArgument)
	}
	return nil
}
