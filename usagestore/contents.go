package usagestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"

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
)

type contentsRecord struct {
	Version int
	Layers  map[digest.Digest]usage.Contents
}

func errVersion(v int) error {
	return fmt.Errorf("record version %d, want %d", v, recordVersion)
}

// errNotCounted is a layer's contents not counted yet, asked by a reader
// that may not start the count.
var errNotCounted = errors.New("contents not counted yet (a report on the admin socket counts them)")

// contentsOf returns what layer holds in the repository, counted once (by
// the WithContents function) and kept. A layer not counted yet is counted
// in the background, under the store's lifetime (Close stops it), when
// start is set; counting is then true until the count ends. A count that
// failed is told once; the next call counts again.
func (s *Store) contentsOf(layer digest.Digest, start bool) (c usage.Contents, counting bool, err error) {
	s.cmu.Lock()
	defer s.cmu.Unlock()
	if c, ok := s.contents[layer]; ok {
		return c, false, nil
	}
	if s.cfg.contents == nil {
		return usage.Contents{}, false, fmt.Errorf("contents of layer %s: no repository to count them in: %w", layer, errdefs.ErrUnavailable)
	}
	if _, err := layerFileName(layer); err != nil {
		return usage.Contents{}, false, err
	}
	if s.counting[layer] {
		return usage.Contents{}, true, nil
	}
	if err := s.countErr[layer]; err != nil {
		delete(s.countErr, layer)
		return usage.Contents{}, false, err
	}
	if !start {
		return usage.Contents{}, false, errNotCounted
	}
	if s.life.Err() != nil {
		return usage.Contents{}, false, fmt.Errorf("contents of layer %s: usage store closed: %w", layer, errdefs.ErrUnavailable)
	}
	s.counting[layer] = true
	s.counts.Add(1)
	go s.count(layer)
	return usage.Contents{}, true, nil
}

// count counts layer's contents, at most maxCounts layers at a time, and
// keeps them (or the error).
func (s *Store) count(layer digest.Digest) {
	defer s.counts.Done()
	var (
		c   usage.Contents
		err error
	)
	select {
	case s.countSlots <- struct{}{}:
		ctx, cancel := context.WithTimeout(s.life, contentsTimeout)
		c, err = s.cfg.contents(ctx, layer)
		cancel()
		<-s.countSlots
	case <-s.life.Done():
		err = s.life.Err()
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	delete(s.counting, layer)
	if err != nil {
		s.countErr[layer] = fmt.Errorf("failed to count the contents of layer %s: %w", layer, err)
		return
	}
	s.contents[layer] = c
	rec := contentsRecord{Version: recordVersion, Layers: maps.Clone(s.contents)}
	if err := writeJSON(filepath.Join(s.dir, contentsFile), rec, s.cfg.recordLimit); err != nil {
		log.G(s.life).WithError(err).Warn("failed to write the layer contents record")
	}
}

func (s *Store) loadContents(ctx context.Context) {
	var rec contentsRecord
	path := filepath.Join(s.dir, contentsFile)
	if !readRecord(ctx, path, "layer contents record", &rec, &rec.Version, s.cfg.recordLimit) {
		return
	}
	for d, c := range rec.Layers {
		if _, err := layerFileName(d); err == nil && c.Files >= 0 && c.Bytes >= 0 {
			s.contents[d] = c
		}
	}
}
