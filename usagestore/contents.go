package usagestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

const (
	contentsFile = "contents.json"
	// maxCounts bounds the layers counted at once (each count walks a
	// layer in the repository).
	maxCounts = 2
	// contentsTimeout bounds one count of a layer's contents.
	contentsTimeout = 5 * time.Minute
)

type contentsRecord struct {
	Version int
	Layers  map[digest.Digest]usage.Contents
}

// errNotCounted is a layer's contents not counted yet, asked by a reader
// that may not start the count.
var errNotCounted = errors.New("contents not counted yet (a report on the admin socket counts them)")

// contents keeps what each layer holds in the repository (contents.json),
// counted once by its function, in the background, and kept (layers are
// immutable). Safe for concurrent use; close stops the counts.
type contents struct {
	// path is the record file.
	path string
	// fn counts a layer's contents; nil when there is no repository.
	fn ContentsFunc
	// recordLimit bounds the record file, written or read.
	recordLimit int64

	// mu guards contents, counting and countErr: the layers counted, being
	// counted (by goroutines under life, counted in counts) and whose
	// last count failed.
	mu       sync.Mutex
	contents map[digest.Digest]usage.Contents
	counting map[digest.Digest]bool
	countErr map[digest.Digest]error
	life     context.Context
	endLife  context.CancelFunc
	counts   sync.WaitGroup
	// countSlots holds one token per count running (maxCounts at most).
	countSlots chan struct{}
}

// newContents returns the contents recorded in path, counting those of
// other layers with fn under a lifetime derived from ctx (its values, not
// its cancellation); an unreadable record is logged and ignored.
func newContents(ctx context.Context, path string, fn ContentsFunc, recordLimit int64) *contents {
	ct := &contents{
		path:        path,
		fn:          fn,
		recordLimit: recordLimit,
		contents:    map[digest.Digest]usage.Contents{},
		counting:    map[digest.Digest]bool{},
		countErr:    map[digest.Digest]error{},
		countSlots:  make(chan struct{}, maxCounts),
	}
	ct.life, ct.endLife = context.WithCancel(context.WithoutCancel(ctx))
	ct.load(ctx)
	return ct
}

// of returns what layer holds in the repository, counted once (by the
// WithContents function) and kept. A layer not counted yet is counted in
// the background, under ct's lifetime (close stops it), when start is
// set; counting is then true until the count ends. A count that failed is
// told once; the next call counts again.
func (ct *contents) of(layer digest.Digest, start bool) (c usage.Contents, counting bool, err error) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if c, ok := ct.contents[layer]; ok {
		return c, false, nil
	}
	if ct.fn == nil {
		return usage.Contents{}, false, fmt.Errorf("contents of layer %s: no repository to count them in: %w", layer, errdefs.ErrUnavailable)
	}
	if _, err := layerFileName(layer); err != nil {
		return usage.Contents{}, false, err
	}
	if ct.counting[layer] {
		return usage.Contents{}, true, nil
	}
	if err := ct.countErr[layer]; err != nil {
		delete(ct.countErr, layer)
		return usage.Contents{}, false, err
	}
	if !start {
		return usage.Contents{}, false, errNotCounted
	}
	if ct.life.Err() != nil {
		return usage.Contents{}, false, fmt.Errorf("contents of layer %s: usage store closed: %w", layer, errdefs.ErrUnavailable)
	}
	ct.counting[layer] = true
	ct.counts.Add(1)
	go ct.count(layer)
	return usage.Contents{}, true, nil
}

// count counts layer's contents, at most maxCounts layers at a time, and
// keeps them (or the error).
func (ct *contents) count(layer digest.Digest) {
	defer ct.counts.Done()
	var (
		c   usage.Contents
		err error
	)
	select {
	case ct.countSlots <- struct{}{}:
		ctx, cancel := context.WithTimeout(ct.life, contentsTimeout)
		c, err = ct.fn(ctx, layer)
		cancel()
		<-ct.countSlots
	case <-ct.life.Done():
		err = ct.life.Err()
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	delete(ct.counting, layer)
	if err != nil {
		ct.countErr[layer] = fmt.Errorf("failed to count the contents of layer %s: %w", layer, err)
		return
	}
	ct.contents[layer] = c
	rec := contentsRecord{Version: recordVersion, Layers: maps.Clone(ct.contents)}
	if err := writeJSON(ct.path, rec, ct.recordLimit); err != nil {
		log.G(ct.life).WithError(err).Warn("failed to write the layer contents record")
	}
}

// load reads the contents record; an unreadable file is logged and
// ignored (and replaced at the next write).
func (ct *contents) load(ctx context.Context) {
	var rec contentsRecord
	if !readRecord(ctx, ct.path, "layer contents record", &rec, &rec.Version, ct.recordLimit) {
		return
	}
	for d, c := range rec.Layers {
		if _, err := layerFileName(d); err == nil && c.Files >= 0 && c.Bytes >= 0 {
			ct.contents[d] = c
		}
	}
}

// close stops the counts in flight and those waiting for a turn, and waits
// for them to end. A count asked after it is refused.
func (ct *contents) close() {
	ct.mu.Lock()
	ct.endLife()
	ct.mu.Unlock()
	ct.counts.Wait()
}
