package snapshot

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
)

// Labels containerd's unpacker passes with LabelTarget. It sets them after
// copying an image's annotations, so an image cannot choose them, but they
// follow the image config's diff IDs, which nothing checked before apply.
const (
	// LabelDiffID is the diff ID the image config claims for the layer.
	LabelDiffID = snapshots.LabelSnapshotDiffID
	// LabelParentChain is the chain ID of the layers below (absent for
	// the first layer).
	LabelParentChain = "containerd.io/snapshot/parent-chain-id"
)

// LayerDiffIDer is implemented by a LayerFS whose store records each
// layer's diff ID: the digest of its uncompressed tar, which chain IDs are
// made of. The chain check (WithChainCheck) needs it: with the check on and
// a LayerFS without it, no layer is served.
type LayerDiffIDer interface {
	// LayerDiffID returns the diff ID the store records for layer. It
	// returns an error wrapping errdefs.ErrNotFound when the store does not
	// hold the layer, errdefs.ErrUnavailable when the store does not
	// answer before ctx ends, and another error when it holds the layer
	// but no usable diff ID.
	LayerDiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error)
}

// DefaultChainCheck is whether the chain check is on when WithChainCheck is
// not given.
const DefaultChainCheck = true

// WithChainCheck turns the chain check on (the default) or off. With it on,
// a layer is served, and a remote snapshot restored at start, only under
// the chain ID its recorded diff ID makes on top of its parent's:
// identity.ChainID(parent chain, diff ID) must equal the target, and the
// LabelDiffID and LabelParentChain labels must agree where given.
// containerd checks diff IDs only when it applies a layer, never for a
// snapshot that already exists; without the check an image whose config
// claims a popular layer's diff ID for any layer of the store would have
// that layer committed under the popular chain, for every later pull.
func WithChainCheck(on bool) Opt {
	return func(c *config) error {
		c.chainCheck = on
		return nil
	}
}

// chainError says why a layer may not be committed, or restored, under a
// chain ID; reason is what the observer is told.
type chainError struct {
	reason FallbackReason
	err    error
}

func (e *chainError) Error() string { return e.err.Error() }
func (e *chainError) Unwrap() error { return e.err }

func mismatch(format string, args ...any) error {
	return &chainError{reason: ReasonChainMismatch, err: fmt.Errorf(format, args...)}
}

// chainReason returns the fallback reason of a chain check error.
func chainReason(err error) FallbackReason {
	var ce *chainError
	if errors.As(err, &ce) {
		return ce.reason
	}
	return ReasonMountFailed
}

// parentChain returns the chain ID recorded on the committed snapshot
// parent (its LabelTarget, which containerd's unpacker sets on every layer
// it commits and the snapshotter on every layer it serves), or "" for no
// parent. It must run in a transaction.
func parentChain(ctx context.Context, parent string) (string, error) {
	if parent == "" {
		return "", nil
	}
	_, info, _, err := storage.GetInfo(ctx, parent)
	if err != nil {
		return "", err
	}
	chain, err := digest.Parse(info.Labels[LabelTarget])
	if err != nil {
		return "", mismatch("parent %q records no chain id (%s=%q): the chain cannot be verified", parent, LabelTarget, info.Labels[LabelTarget])
	}
	return chain.String(), nil
}

// checkChain returns nil if layer, on a parent whose chain ID is parent
// ("" for none), makes the chain target, and labels (a Prepare's, or those
// recorded on the snapshot) agree. Otherwise it returns a *chainError.
// The diff ID lookup is bounded by the lookup timeout.
func (s *snapshotter) checkChain(ctx context.Context, layer digest.Digest, target, parent string, labels map[string]string) error {
	differ, ok := s.config.layers.(LayerDiffIDer)
	if !ok {
		return &chainError{reason: ReasonNoDiffID, err: errors.New("the layer store records no diff ids")}
	}
	lctx, cancel := context.WithTimeout(ctx, s.config.lookupTimeout)
	defer cancel()
	diffID, err := differ.LayerDiffID(lctx, layer)
	if err != nil {
		reason := ReasonNoDiffID
		if errdefs.IsNotFound(err) || errdefs.IsUnavailable(err) || errdefs.IsPermissionDenied(err) || errors.Is(err, context.DeadlineExceeded) {
			reason = fallbackReason(err, labels[LabelLayerMediaType])
		}
		return &chainError{reason: reason, err: err}
	}
	if claimed, ok := labels[LabelDiffID]; ok && claimed != diffID.String() {
		return mismatch("layer %s has diff id %s, the image claims %s", layer, diffID, claimed)
	}
	if claimed, ok := labels[LabelParentChain]; ok && claimed != parent {
		return mismatch("parent chain is %q, the labels claim %q", parent, claimed)
	}
	if named, ok := labels[LabelTarget]; ok && named != target {
		return mismatch("snapshot %q is labelled as chain %q", target, named)
	}
	want := diffID
	if parent != "" {
		want = identity.ChainID([]digest.Digest{digest.Digest(parent), diffID})
	}
	if want.String() != target {
		return mismatch("layer %s (diff id %s) on parent chain %q makes chain %s, not %s", layer, diffID, parent, want, target)
	}
	return nil
}

// checkRemoteRequest runs checkChain for a Prepare of req on parent.
func (s *snapshotter) checkRemoteRequest(ctx context.Context, parent string, req remoteRequest) error {
	var chain string
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) (err error) {
		chain, err = parentChain(ctx, parent)
		return err
	})
	if err != nil {
		if errors.As(err, new(*chainError)) {
			return err
		}
		return &chainError{reason: ReasonMountFailed, err: err}
	}
	return s.checkChain(ctx, req.layer, req.target, chain, req.labels)
}
