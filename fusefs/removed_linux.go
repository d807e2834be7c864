//go:build linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
)

// A layer can leave the store while it is mounted: DUCC's garbage
// collection deletes the layers no image uses any more (cvmfs_server ingest
// --delete), and the CVMFS client drops them at its next catalog reload.
// The mount's server then answers ENOENT for everything, the layer root
// included, and overlayfs on it fails. Nothing in the FUSE requests says
// why, so Check and Stats ask the Source again.

// probeTimeout bounds one look for a layer in the Source, from Check and
// Stats: a store that does not answer says nothing about the layer.
const probeTimeout = 2 * time.Second

// probeRemoved asks the Source for mt's layer. It returns an error wrapping
// errdefs.ErrFailedPrecondition when the Source no longer holds the layer
// (recorded for Stats and logged at Error the first time), one wrapping
// errdefs.ErrUnavailable when the Source holds another directory than the
// one mt serves (the layer was removed and written again: a new mount
// serves it), and nil otherwise, a Source that does not answer included.
func (m *Manager) probeRemoved(ctx context.Context, mt *mount) error {
	ls := m.layerState(mt.layer)
	if ls == nil {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx, probeTimeout)
	defer cancel()
	dir, err := m.src.OpenLayer(ctx, mt.layer)
	if errdefs.IsNotFound(err) || errors.Is(err, fs.ErrNotExist) {
		m.noteRemoved(ctx, mt.layer, ls, true)
		return fmt.Errorf("layer %s was removed from the layer store while mounted at %q: %w", mt.layer, mt.mountpoint, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return nil
	}
	defer dir.Close()
	m.noteRemoved(ctx, mt.layer, ls, false)
	fi, err := dir.Stat()
	if err != nil {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Dev != mt.tree.rootDev || st.Ino != mt.tree.rootIno) {
		return fmt.Errorf("layer %s at %q: the store holds another copy of the layer than the one mounted: %w", mt.layer, mt.mountpoint, errdefs.ErrUnavailable)
	}
	return nil
}

// noteRemoved records whether layer is gone from the store, logging at
// Error when it is first found gone and at Info when it is back.
func (m *Manager) noteRemoved(ctx context.Context, layer digest.Digest, ls *layerState, removed bool) {
	if ls.removed.Swap(removed) == removed {
		return
	}
	entry := log.G(ctx).WithField("layer", layer)
	if removed {
		entry.Error("layer removed from the layer store while mounted (the repository's garbage collection?): its running containers get ENOENT and new containers on it fail; remove the image and pull it again, its layers then come from the registry; keep the repository's garbage-collection grace period longer than images stay in use")
	} else {
		entry.Info("layer back in the layer store")
	}
}

// layerState returns the state of layer, nil when it is not mounted.
func (m *Manager) layerState(layer digest.Digest) *layerState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.layers[layer]
}

// probeAll looks for every mounted layer in the Source, in parallel and
// within probeTimeout, so that Stats reports the layers removed from the
// store even when no Check ran since. A layer whose previous look has not
// ended (a store that does not answer) is not looked for again.
func (m *Manager) probeAll(ctx context.Context) {
	m.mu.Lock()
	var mts []*mount
	seen := map[digest.Digest]bool{}
	for _, mt := range m.mounts {
		if mt != nil && !seen[mt.layer] {
			seen[mt.layer] = true
			mts = append(mts, mt)
		}
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, mt := range mts {
		ls := m.layerState(mt.layer)
		if ls == nil || !ls.probing.CompareAndSwap(false, true) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ls.probing.Store(false)
			m.probeRemoved(ctx, mt)
		}()
	}
	wg.Wait()
}
