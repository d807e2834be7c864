package snapshot

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// Labels that tell an observer which image a layer belongs to and how it is
// compressed. Neither changes what the snapshotter does.
const (
	// LabelImageRef is the image reference, added with LabelLayerDigest by
	// the CRI plugin, the transfer service and cvmfsctl pull.
	LabelImageRef = "containerd.io/snapshot/cri.image-ref"
	// LabelLayerMediaType is the layer's media type, added by cvmfsctl pull
	// (containerd's own clients do not pass it).
	LabelLayerMediaType = "containerd.io/snapshot/cvmfs.layer-media-type"
)

// FallbackReason says why a layer was pulled instead of served.
type FallbackReason string

// The reasons a layer is pulled from the registry.
const (
	// ReasonNotInRepository: the layer store does not hold the layer.
	ReasonNotInRepository FallbackReason = "not-in-repository"
	// ReasonLookupTimeout: the layer store did not answer within the lookup
	// timeout (or was unavailable).
	ReasonLookupTimeout FallbackReason = "lookup-timeout"
	// ReasonMalformedLabel: the layer digest label is not a sha256 digest.
	ReasonMalformedLabel FallbackReason = "malformed-label"
	// ReasonNoLabel: the extraction snapshot carries a target but no layer
	// digest label (a client that adds no labels).
	ReasonNoLabel FallbackReason = "no-label"
	// ReasonZstd: the layer is zstd-compressed (known from
	// LabelLayerMediaType) and not in the store, which holds gzip layers.
	ReasonZstd FallbackReason = "zstd"
	// ReasonNotGzip: the layer has another media type that is not gzip
	// (uncompressed, foreign) and is not in the store.
	ReasonNotGzip FallbackReason = "not-gzip"
	// ReasonMountFailed: the layer is in the store but could not be mounted
	// or committed.
	ReasonMountFailed FallbackReason = "mount-failed"
	// ReasonPulledBefore: the layer's snapshot already exists, made by an
	// earlier pull (not served from the store).
	ReasonPulledBefore FallbackReason = "pulled-before"
	// ReasonChainMismatch: the store holds the layer, but the chain ID
	// containerd asks for is not the one the layer's recorded diff ID makes
	// on its parent (the image config's diff IDs, or the labels, disagree
	// with the store; see WithChainCheck).
	ReasonChainMismatch FallbackReason = "chain-mismatch"
	// ReasonNoDiffID: the store holds the layer but no usable diff ID for
	// it (DUCC's layers.json missing, unreadable or malformed), so its
	// chain cannot be checked.
	ReasonNoDiffID FallbackReason = "no-diff-id"
	// ReasonRefused: the layer store holds the layer but refuses to serve
	// it as it presents it (errdefs.ErrPermissionDenied; for CVMFS, a
	// client that shows every file as its own). Logged at Error: every
	// layer of the store is pulled until the store is fixed.
	ReasonRefused FallbackReason = "refused"
)

// LayerEvent is what an observer learns of each layer unpack (a Prepare
// carrying LabelTarget): served from the layer store or pulled, and why.
type LayerEvent struct {
	// Image is LabelImageRef, or "" when the labels do not name it.
	Image string
	// Layer is the layer digest; "" when the label is absent or malformed.
	Layer digest.Digest
	// RawLayer is the layer digest label as given (may be malformed).
	RawLayer string
	// MediaType is LabelLayerMediaType, or "" when unknown.
	MediaType string
	// Served is set when the layer was mounted from the layer store.
	Served bool
	// Reason says why the layer was pulled; "" when Served.
	Reason FallbackReason
}

// Observer receives a LayerEvent for each layer unpack. It runs on the
// Prepare path: it must be quick and must not call the snapshotter.
type Observer func(ctx context.Context, ev LayerEvent)

// WithLayerObserver makes the snapshotter report every layer unpack to fn:
// the layers it served and every fallback to a pull, with its reason.
func WithLayerObserver(fn Observer) Opt {
	return func(c *config) error {
		if fn == nil {
			return fmt.Errorf("nil layer observer: %w", errdefs.ErrInvalidArgument)
		}
		c.observer = fn
		return nil
	}
}

// observe reports an unpack of the layer labels ask for to the observer.
func (s *snapshotter) observe(ctx context.Context, labels map[string]string, layer digest.Digest, reason FallbackReason) {
	if s.config.observer == nil {
		return
	}
	s.config.observer(ctx, LayerEvent{
		Image:     labels[LabelImageRef],
		Layer:     layer,
		RawLayer:  labels[LabelLayerDigest],
		MediaType: labels[LabelLayerMediaType],
		Served:    reason == "",
		Reason:    reason,
	})
}

// observeExisting reports the unpack of a layer whose target snapshot
// exists already: served if that snapshot is remote, else pulled before.
func (s *snapshotter) observeExisting(ctx context.Context, req remoteRequest) {
	if s.config.observer == nil {
		return
	}
	var remote bool
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) error {
		_, info, _, err := storage.GetInfo(ctx, req.target)
		_, remote = info.Labels[LabelRemote]
		return err
	})
	if err != nil {
		return // removed meanwhile: nothing to report
	}
	reason := ReasonPulledBefore
	if remote {
		reason = ""
	}
	s.observe(ctx, req.labels, req.layer, reason)
}

// fallbackReason classifies why mounting a layer failed, refined by its
// media type when the labels give it.
func fallbackReason(err error, mediaType string) FallbackReason {
	switch {
	case errdefs.IsPermissionDenied(err):
		return ReasonRefused
	case errdefs.IsNotFound(err):
		switch {
		case strings.Contains(mediaType, "zstd"):
			return ReasonZstd
		case mediaType != "" && !strings.Contains(mediaType, "gzip"):
			return ReasonNotGzip
		}
		return ReasonNotInRepository
	case errors.Is(err, context.DeadlineExceeded), errdefs.IsUnavailable(err):
		return ReasonLookupTimeout
	default:
		return ReasonMountFailed
	}
}
