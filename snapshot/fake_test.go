package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

// fakeLayerFS is a LayerFS that "mounts" by writing a marker file into the
// mountpoint, so the core can be tested without root.
type fakeLayerFS struct {
	mu      sync.Mutex
	present map[digest.Digest]int64 // layers the store holds, and their sizes
	mounted map[string]digest.Digest
	dead    map[string]bool
	// removed are the mountpoints whose layer the store no longer holds:
	// Check answers FailedPrecondition.
	removed map[string]bool
	hang    bool // Mount blocks until ctx ends
	failAll bool // Mount fails with ErrUnavailable
	// refused: Mount and LayerDiffID fail with ErrPermissionDenied, as
	// a store whose files a CVMFS client claims as its own.
	refused bool
	sizeErr error // LayerSize fails with it
	// diffIDs are the diff IDs the store records (diffOf by default); a
	// present layer missing here has none (no usable layers.json).
	diffIDs map[digest.Digest]digest.Digest
	calls   []string
}

func newFakeLayerFS(layers ...digest.Digest) *fakeLayerFS {
	f := &fakeLayerFS{present: map[digest.Digest]int64{}, mounted: map[string]digest.Digest{}, dead: map[string]bool{}, removed: map[string]bool{}, diffIDs: map[digest.Digest]digest.Digest{}}
	for _, l := range layers {
		f.present[l] = 4096
		f.diffIDs[l] = diffOf(l)
	}
	return f
}

const fakeMarker = "fake-layer"

func (f *fakeLayerFS) Mount(ctx context.Context, mountpoint string, layer digest.Digest) error {
	f.mu.Lock()
	f.calls = append(f.calls, "mount "+layer.String())
	hang, failAll, refused := f.hang, f.failAll, f.refused
	_, ok := f.present[layer]
	f.mu.Unlock()
	if refused && ok {
		return fmt.Errorf("fake: layer %s owned by the CVMFS client: %w", layer, errdefs.ErrPermissionDenied)
	}
	if hang {
		<-ctx.Done()
		return fmt.Errorf("fake: %w: %w", ctx.Err(), errdefs.ErrUnavailable)
	}
	if failAll {
		return fmt.Errorf("fake: store down: %w", errdefs.ErrUnavailable)
	}
	if !ok {
		return fmt.Errorf("fake: layer %s: %w", layer, errdefs.ErrNotFound)
	}
	if err := os.WriteFile(filepath.Join(mountpoint, fakeMarker), []byte(layer), 0o644); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, busy := f.mounted[mountpoint]; busy {
		return fmt.Errorf("fake: %s already mounted", mountpoint)
	}
	f.mounted[mountpoint] = layer
	delete(f.dead, mountpoint)
	return nil
}

func (f *fakeLayerFS) Check(ctx context.Context, mountpoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "check")
	if f.removed[mountpoint] {
		return fmt.Errorf("fake: layer at %s removed from the store: %w", mountpoint, errdefs.ErrFailedPrecondition)
	}
	if _, ok := f.mounted[mountpoint]; !ok || f.dead[mountpoint] {
		return fmt.Errorf("fake: %s dead: %w", mountpoint, errdefs.ErrUnavailable)
	}
	return nil
}

func (f *fakeLayerFS) Unmount(ctx context.Context, mountpoint string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "unmount")
	delete(f.mounted, mountpoint)
	delete(f.dead, mountpoint)
	err := os.Remove(filepath.Join(mountpoint, fakeMarker))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func (f *fakeLayerFS) LayerSize(ctx context.Context, layer digest.Digest) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sizeErr != nil {
		return 0, f.sizeErr
	}
	return f.present[layer], nil
}

// diffOf is the diff ID the fake store records for layer by default.
func diffOf(layer digest.Digest) digest.Digest {
	return digest.FromString("uncompressed " + layer.String())
}

func (f *fakeLayerFS) LayerDiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "diffid "+layer.String())
	if _, ok := f.present[layer]; !ok {
		return "", fmt.Errorf("fake: layer %s: %w", layer, errdefs.ErrNotFound)
	}
	if f.failAll {
		return "", fmt.Errorf("fake: store down: %w", errdefs.ErrUnavailable)
	}
	if f.refused {
		return "", fmt.Errorf("fake: layer %s owned by the CVMFS client: %w", layer, errdefs.ErrPermissionDenied)
	}
	d, ok := f.diffIDs[layer]
	if !ok {
		return "", fmt.Errorf("fake: layer %s has no layers.json: %w", layer, errdefs.ErrFailedPrecondition)
	}
	return d, nil
}

func (f *fakeLayerFS) setDiffID(layer, diffID digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if diffID == "" {
		delete(f.diffIDs, layer)
		return
	}
	f.diffIDs[layer] = diffID
}

func (f *fakeLayerFS) mountCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mounted)
}

func (f *fakeLayerFS) mountCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if len(c) > 5 && c[:5] == "mount" {
			n++
		}
	}
	return n
}

// StatLayerRoot answers from a directory standing in for the layer's root
// in the store, with mode 0750.
func (f *fakeLayerFS) StatLayerRoot(ctx context.Context, layer digest.Digest) (os.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.present[layer]; !ok {
		return nil, errdefs.ErrNotFound
	}
	dir, err := os.MkdirTemp("", "fake-layer-root-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o750); err != nil {
		return nil, err
	}
	return os.Stat(dir)
}
