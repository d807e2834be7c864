package snapshot

import (
	"context"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
)

// TestLayerObserver: every layer unpack reaches the observer once, with
// the image, the layer and the reason of each fallback.
func TestLayerObserver(t *testing.T) {
	const img = "registry.example/team/app:1"
	gz := "application/vnd.oci.image.layer.v1.tar+gzip"
	zstd := "application/vnd.oci.image.layer.v1.tar+zstd"
	for _, tc := range []struct {
		name   string
		setup  func(*fakeLayerFS)
		labels map[string]string
		want   LayerEvent
	}{
		{"served", nil, map[string]string{LabelTarget: "c", LabelLayerDigest: layerA.String(), LabelImageRef: img, LabelLayerMediaType: gz},
			LayerEvent{Image: img, Layer: layerA, RawLayer: layerA.String(), MediaType: gz, Served: true}},
		{"absent", nil, map[string]string{LabelTarget: "c", LabelLayerDigest: layerB.String(), LabelImageRef: img},
			LayerEvent{Image: img, Layer: layerB, RawLayer: layerB.String(), Reason: ReasonNotInRepository}},
		{"absent zstd", nil, map[string]string{LabelTarget: "c", LabelLayerDigest: layerB.String(), LabelImageRef: img, LabelLayerMediaType: zstd},
			LayerEvent{Image: img, Layer: layerB, RawLayer: layerB.String(), MediaType: zstd, Reason: ReasonZstd}},
		{"absent uncompressed", nil, map[string]string{LabelTarget: "c", LabelLayerDigest: layerB.String(), LabelLayerMediaType: "application/vnd.oci.image.layer.v1.tar"},
			LayerEvent{Layer: layerB, RawLayer: layerB.String(), MediaType: "application/vnd.oci.image.layer.v1.tar", Reason: ReasonNotGzip}},
		{"timeout", func(f *fakeLayerFS) { f.hang = true }, map[string]string{LabelTarget: "c", LabelLayerDigest: layerA.String(), LabelImageRef: img},
			LayerEvent{Image: img, Layer: layerA, RawLayer: layerA.String(), Reason: ReasonLookupTimeout}},
		{"refused", func(f *fakeLayerFS) { f.refused = true }, map[string]string{LabelTarget: "c", LabelLayerDigest: layerA.String(), LabelImageRef: img},
			LayerEvent{Image: img, Layer: layerA, RawLayer: layerA.String(), Reason: ReasonRefused}},
		{"malformed", nil, map[string]string{LabelTarget: "c", LabelLayerDigest: "sha256:../../etc", LabelImageRef: img},
			LayerEvent{Image: img, RawLayer: "sha256:../../etc", Reason: ReasonMalformedLabel}},
		{"no label", nil, map[string]string{LabelTarget: "c", LabelImageRef: img},
			LayerEvent{Image: img, Reason: ReasonNoLabel}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lfs := newFakeLayerFS(layerA)
			if tc.setup != nil {
				tc.setup(lfs)
			}
			var (
				mu  sync.Mutex
				got []LayerEvent
			)
			sn := newTestSnapshotter(t, t.TempDir(), lfs, WithLayerObserver(func(_ context.Context, ev LayerEvent) {
				mu.Lock()
				got = append(got, ev)
				mu.Unlock()
			}))
			_, err := sn.Prepare(context.Background(), "extract", "", snapshots.WithLabels(tc.labels))
			if tc.want.Served != errdefs.IsAlreadyExists(err) {
				t.Fatalf("Prepare: %v", err)
			}
			// A Prepare without a target (a container's writable layer) is
			// no unpack.
			if _, err := sn.Prepare(context.Background(), "rw", ""); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("events %+v, want [%+v]", got, tc.want)
			}
		})
	}
}

// TestLayerObserverExisting: a layer whose snapshot exists is reported as
// served if that snapshot is remote, else as pulled before.
func TestLayerObserverExisting(t *testing.T) {
	var got []LayerEvent
	sn := newTestSnapshotter(t, t.TempDir(), newFakeLayerFS(layerA), WithLayerObserver(func(_ context.Context, ev LayerEvent) { got = append(got, ev) }))
	ctx := context.Background()
	if _, err := prepareLayer(t, sn, "remote", "", layerA); !errdefs.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := prepareLayer(t, sn, "pulled", "", layerB); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "pulled", "extract-pulled"); err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, tc := range []struct {
		target string
		layer  string
	}{{"remote", layerA.String()}, {"pulled", layerB.String()}} {
		_, err := sn.Prepare(ctx, "again-"+tc.target, "", snapshots.WithLabels(map[string]string{LabelTarget: tc.target, LabelLayerDigest: tc.layer}))
		if !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare of an existing target: %v", err)
		}
	}
	if len(got) != 2 || !got[0].Served || got[0].Layer != layerA || got[1].Served || got[1].Reason != ReasonPulledBefore || got[1].Layer != layerB {
		t.Errorf("events %+v", got)
	}
}

func TestWithLayerObserverNil(t *testing.T) {
	if _, err := New(context.Background(), t.TempDir(), WithLayerObserver(nil)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New with a nil observer: %v", err)
	}
}
