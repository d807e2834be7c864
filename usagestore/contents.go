package usagestore

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

const contentsFile = "contents.json"

type contentsRecord struct {
	Version int
	Layers  map[digest.Digest]usage.Contents
}

func errVersion(v int) error {
	return fmt.Errorf("record version %d, want %d", v, recordVersion)
}

// Contents returns what layer holds in the repository, counted once (by
// the WithContents function) and kept.
func (s *Store) Contents(ctx context.Context, layer digest.Digest) (usage.Contents, error) {
	s.cmu.Lock()
	c, ok := s.contents[layer]
	s.cmu.Unlock()
	if ok {
		return c, nil
	}
	if s.cfg.contents == nil {
		return usage.Contents{}, fmt.Errorf("contents of layer %s: no repository to count them in: %w", layer, errdefs.ErrUnavailable)
	}
	if _, err := layerFileName(layer); err != nil {
		return usage.Contents{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, contentsTimeout)
	defer cancel()
	c, err := s.cfg.contents(ctx, layer)
	if err != nil {
		return usage.Contents{}, fmt.Errorf("failed to count the contents of layer %s: %w", layer, err)
	}
	s.cmu.Lock()
	defer s.cmu.Unlock()
	s.contents[layer] = c
	rec := contentsRecord{Version: recordVersion, Layers: maps.Clone(s.contents)}
	if err := writeJSON(filepath.Join(s.dir, contentsFile), rec); err != nil {
		log.G(ctx).WithError(err).Warn("failed to write the layer contents record")
	}
	return c, nil
}

func (s *Store) loadContents(ctx context.Context) {
	var rec contentsRecord
	path := filepath.Join(s.dir, contentsFile)
	if !readRecord(ctx, path, "layer contents record", &rec, &rec.Version) {
		return
	}
	for d, c := range rec.Layers {
		if _, err := layerFileName(d); err == nil && c.Files >= 0 && c.Bytes >= 0 {
			s.contents[d] = c
		}
	}
}
