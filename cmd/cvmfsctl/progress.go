package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
)

// tracker learns an image's layers and chain IDs from the pull's handlers
// and reports each layer once its snapshot exists: from CVMFS when the
// snapshotter committed it as a remote snapshot, downloaded otherwise.
type tracker struct {
	cs  content.Store
	sn  snapshots.Snapshotter
	out io.Writer

	mu       sync.Mutex
	layers   []ocispec.Descriptor
	chainIDs []digest.Digest
	reported []bool
	sum      summary
}

type summary struct {
	layers, remote, downloaded   int
	remoteBytes, downloadedBytes int64
	// results is each layer's outcome, in the order reported.
	results []layerResult
}

// layerResult is where one layer of a pull came from (pull --json).
type layerResult struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	// From is "cvmfs", "registry", or "" when the layer was not unpacked
	// (Error then says why).
	From  string `json:"from,omitempty"`
	Error string `json:"error,omitempty"`
}

func newTracker(cs content.Store, sn snapshots.Snapshotter, out io.Writer) *tracker {
	return &tracker{cs: cs, sn: sn, out: out}
}

// wrap records the layers of a manifest and the diff IDs of a config as
// they pass through the pull.
func (t *tracker) wrap(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil {
			return children, err
		}
		switch {
		case images.IsManifestType(desc.MediaType):
			var layers []ocispec.Descriptor
			for _, c := range children {
				if images.IsLayerType(c.MediaType) {
					layers = append(layers, c)
				}
			}
			t.mu.Lock()
			t.layers = layers
			t.reported = make([]bool, len(layers))
			t.mu.Unlock()
		case images.IsConfigType(desc.MediaType):
			b, err := content.ReadBlob(ctx, t.cs, desc)
			if err != nil {
				return nil, err
			}
			var img ocispec.Image
			if err := json.Unmarshal(b, &img); err != nil {
				return nil, fmt.Errorf("parse image config: %w", err)
			}
			t.mu.Lock()
			t.chainIDs = identity.ChainIDs(img.RootFS.DiffIDs)
			t.mu.Unlock()
		}
		return children, nil
	})
}

// poll reports layers every interval until the returned stop is called.
func (t *tracker) poll(ctx context.Context, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				t.report(ctx, false)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// finish reports every layer not reported yet and returns the totals.
func (t *tracker) finish(ctx context.Context) summary {
	t.report(ctx, true)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sum
}

func (t *tracker) report(ctx context.Context, final bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.chainIDs) != len(t.layers) {
		return // the config has not been read yet
	}
	for i, l := range t.layers {
		if t.reported[i] {
			continue
		}
		info, err := t.sn.Stat(ctx, t.chainIDs[i].String())
		if errdefs.IsNotFound(err) && !final {
			continue
		}
		prefix := fmt.Sprintf("layer %d/%d %s %10s", i+1, len(t.layers), l.Digest, humanBytes(l.Size))
		t.reported[i] = true
		t.sum.layers++
		res := layerResult{Digest: l.Digest, Size: l.Size}
		switch {
		case err != nil:
			res.Error = err.Error()
			fmt.Fprintf(t.out, "%s not unpacked: %v\n", prefix, err)
		case t.isRemote(ctx, info, l):
			t.sum.remote++
			t.sum.remoteBytes += l.Size
			res.From = "cvmfs"
			fmt.Fprintf(t.out, "%s from CVMFS\n", prefix)
		default:
			t.sum.downloaded++
			t.sum.downloadedBytes += l.Size
			res.From = "registry"
			fmt.Fprintf(t.out, "%s downloaded\n", prefix)
		}
		t.sum.results = append(t.sum.results, res)
	}
}

// isRemote reports whether the layer's snapshot came from the layer store:
// it carries the remote label, or its blob was never fetched.
func (t *tracker) isRemote(ctx context.Context, info snapshots.Info, l ocispec.Descriptor) bool {
	if _, ok := info.Labels[snapshot.LabelRemote]; ok {
		return true
	}
	_, err := t.cs.Info(ctx, l.Digest)
	return errdefs.IsNotFound(err)
}
