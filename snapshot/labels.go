package snapshot

import (
	"maps"
	"slices"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots"
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
	// Its value is the layer digest; restore re-mounts from it. It lies
	// under privateLabelPrefix: only the snapshotter writes it.
	LabelRemote = privateLabelPrefix + "remote"
)

// privateLabelPrefix is the namespace of the labels only the snapshotter
// writes. containerd forwards to a snapshotter only the labels of a client
// (and the annotations of an image's layer descriptors) under
// containerd.io/snapshot/, so none reaches us under this prefix through
// containerd; the snapshotter drops any a caller passes all the same.
const privateLabelPrefix = "cvmfs-snapshotter.internal/"

// legacyLabelRemote is where earlier versions kept the remote marker. It
// lies in containerd's inherited namespace: containerd's unpacker copied it
// from any image's layer annotations into the labels of Prepare and Commit.
// It is never taken from a caller; restore migrates the marker of
// snapshots committed by earlier versions (migrate.go).
const legacyLabelRemote = "containerd.io/snapshot/remote"

// isMarker reports whether a label key is one only the snapshotter may set.
func isMarker(key string) bool {
	return key == legacyLabelRemote || strings.HasPrefix(key, privateLabelPrefix)
}

// withoutMarkers is a snapshots.Opt, applied after the caller's, that drops
// the labels only the snapshotter sets. Dropping rather than refusing: the
// containerd unpacker copies every containerd.io/snapshot/* annotation of an
// image blindly, and refusing would fail the pull of any image carrying
// one, for labels that mean nothing to the caller.
func withoutMarkers(info *snapshots.Info) error {
	maps.DeleteFunc(info.Labels, func(k, _ string) bool { return isMarker(k) })
	return nil
}

// callerMarkers returns the marker labels among labels, for a log line.
func callerMarkers(labels map[string]string) []string {
	var keys []string
	for k := range labels {
		if isMarker(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

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

// keepMarkers rewrites an Update of a snapshot whose labels are old
// (info and fieldpaths with storage.UpdateInfo's semantics) so that it
// changes every label but the markers: a caller's markers are dropped and
// the snapshot's own are kept, whether the update replaces every label (no
// fieldpaths, or "labels") or names them ("labels.<key>"). ok is false when
// nothing is left to update.
func keepMarkers(old map[string]string, info snapshots.Info, fieldpaths []string) (_ snapshots.Info, _ []string, ok bool) {
	info.Labels = maps.Clone(info.Labels)
	withoutMarkers(&info)
	replaceAll := len(fieldpaths) == 0
	var paths []string
	for _, p := range fieldpaths {
		if key, found := strings.CutPrefix(p, "labels."); found && isMarker(key) {
			continue
		}
		replaceAll = replaceAll || p == "labels"
		paths = append(paths, p)
	}
	if len(fieldpaths) > 0 && len(paths) == 0 {
		return info, nil, false
	}
	if replaceAll {
		for k, v := range old {
			if isMarker(k) {
				if info.Labels == nil {
					info.Labels = map[string]string{}
				}
				info.Labels[k] = v
			}
		}
	}
	return info, paths, true
}
