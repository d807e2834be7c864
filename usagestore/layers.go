package usagestore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

const (
	profilesDir   = "profiles"
	recordVersion = 1
)

// layerRecord is a layer's record file: the folded figures of its ended
// sessions, and those of the live session as last flushed.
type layerRecord struct {
	Version    int
	Layer      digest.Digest
	Accounting usage.Accounting
	Base       tally
	// Session is the live session at the last flush, not folded into
	// Base. Its Start (the session's first access) tells the next reader
	// whether the live figures it sees are that session's (a separate FUSE
	// server outlives daemon restarts) or a new one's (after a crash).
	Session *session `json:",omitempty"`
}

type session struct {
	Start int64
	tally
}

// total returns the record's figures, its live session included.
func (r layerRecord) total(limit int) tally {
	if r.Session == nil {
		return r.Base
	}
	return merge(r.Base, r.Session.tally, limit)
}

// liveLayer is a mounted layer: its record with Base loaded and the last
// live figures seen.
type liveLayer struct {
	rec   layerRecord
	start int64
	last  tally
	sig   signature
	// written is set once rec with last has been written.
	written bool
}

// signature is what tells whether a layer's live figures moved.
type signature struct {
	opens, bytes, reads, unique, lookups, getattrs, last int64
}

func sigOf(st usage.LayerStats) signature {
	return signature{st.Opens, st.BytesRead, st.Reads, st.UniqueFiles, st.Lookups, st.Getattrs, unixNano(st.LastAccess)}
}

// flushLayers writes the layers whose live figures moved and folds those no
// longer live.
func (s *Store) flushLayers(ctx context.Context) error { return s.collect(ctx, true) }

// refresh brings the live figures in without writing anything (they are
// written at the next flush): for readers, who must not make the store
// write (an fsync per layer) nor hold s.mu for long. throttled skips it if
// a refresh began less than refreshInterval ago.
func (s *Store) refresh(ctx context.Context, throttled bool) {
	s.mu.Lock()
	skip := throttled && time.Since(s.refreshed) < refreshInterval
	if !skip {
		s.refreshed = time.Now()
	}
	s.mu.Unlock()
	if skip {
		return
	}
	if err := s.collect(ctx, false); err != nil {
		log.G(ctx).WithError(err).Warn("failed to read the live usage figures")
	}
}

// refreshInterval is the least time between two refreshes for readers.
const refreshInterval = time.Second

// collect asks the source for the live figures and applies them; write
// writes the layers whose figures moved and folds those no longer live
// (without it the changes are left for the next flush). s.mu is not held:
// the source is asked without it (a remote one may take seconds), then the
// figures are applied under it. When the source cannot give its figures
// nothing is folded: the layers stay live.
func (s *Store) collect(ctx context.Context, write bool) error {
	if s.cfg.src == nil {
		return nil
	}
	s.mu.Lock()
	s.fetched++
	seq := s.fetched
	s.mu.Unlock()
	stats, err := s.cfg.src.Stats()
	if err != nil {
		return fmt.Errorf("failed to read the live usage figures: %w", err)
	}
	// The profiles of the layers whose figures moved.
	var errs []error
	profiles := map[digest.Digest][]usage.FileAccess{}
	for _, st := range s.moved(stats) {
		p, err := s.cfg.src.Profile(st.Layer)
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to read the profile of layer %s: %w", st.Layer, err))
			continue
		}
		profiles[st.Layer] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.applied {
		// A flush that asked later has applied newer figures.
		return errors.Join(errs...)
	}
	s.applied = seq
	seen := map[digest.Digest]bool{}
	for _, st := range stats {
		if seen[st.Layer] {
			continue
		}
		seen[st.Layer] = true
		start := unixNano(st.FirstAccess)
		ll := s.live[st.Layer]
		switch {
		case ll == nil:
			ll = s.loadLive(ctx, st.Layer, start)
			if ll == nil {
				continue
			}
			s.live[st.Layer] = ll
		case ll.start != 0 && start != ll.start:
			// Unmounted everywhere and mounted again since the last
			// flush: the old session ended with the figures last seen.
			ll.rec.Base = merge(ll.rec.Base, ll.last, s.cfg.limit)
			ll.last, ll.sig, ll.written = tally{}, signature{}, false
		}
		ll.start = start
		sig := sigOf(st)
		if ll.written && sig == ll.sig {
			continue
		}
		prof, ok := profiles[st.Layer]
		if !ok {
			// No profile of these figures: keep the last ones seen.
			continue
		}
		ll.rec.Accounting = st.Accounting
		ll.last, ll.sig = liveTally(st, prof), sig
		if !write {
			ll.written = false
			continue
		}
		rec := ll.rec
		rec.Session = &session{Start: ll.start, tally: ll.last}
		written, err := s.writeLayer(rec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ll.rec.Base, ll.written = written.Base, true
	}
	for d, ll := range s.live {
		if seen[d] || !write {
			continue
		}
		rec := ll.rec
		rec.Base = merge(rec.Base, ll.last, s.cfg.limit)
		rec.Session = nil
		if _, err := s.writeLayer(rec); err != nil {
			errs = append(errs, err)
		}
		delete(s.live, d)
	}
	return errors.Join(errs...)
}

// moved returns the stats (one per layer) whose figures differ from those
// last written.
func (s *Store) moved(stats []usage.LayerStats) []usage.LayerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []usage.LayerStats
	seen := map[digest.Digest]bool{}
	for _, st := range stats {
		if seen[st.Layer] {
			continue
		}
		seen[st.Layer] = true
		ll := s.live[st.Layer]
		if ll == nil || !ll.written || ll.start != unixNano(st.FirstAccess) || ll.sig != sigOf(st) {
			out = append(out, st)
		}
	}
	return out
}

// loadLive returns the live state of layer, newly mounted with a session
// that started at start, from its record (if any). nil if layer cannot
// name a record.
func (s *Store) loadLive(ctx context.Context, layer digest.Digest, start int64) *liveLayer {
	rec, err := s.readLayer(layer)
	if err != nil {
		if _, nerr := layerFileName(layer); nerr != nil {
			return nil
		}
		if !isNotExist(err) {
			log.G(ctx).WithError(err).WithField("layer", layer).Warn("ignoring an unreadable usage record")
		}
		rec = layerRecord{Version: recordVersion, Layer: layer}
	}
	if rec.Session != nil && (start == 0 || rec.Session.Start != start) {
		// The recorded session is not the live one: it ended without
		// being folded (the daemon and its mounts were killed).
		rec.Base = rec.total(s.cfg.limit)
	}
	rec.Session = nil
	return &liveLayer{rec: rec, start: start}
}

// readLayer reads and checks layer's record file.
func (s *Store) readLayer(layer digest.Digest) (layerRecord, error) {
	name, err := layerFileName(layer)
	if err != nil {
		return layerRecord{}, err
	}
	var rec layerRecord
	path := filepath.Join(s.dir, profilesDir, name)
	if err := readJSON(path, &rec, s.cfg.recordLimit); err != nil {
		return layerRecord{}, err
	}
	if rec.Version != recordVersion || rec.Layer != layer {
		return layerRecord{}, fmt.Errorf("%s: version %d of layer %q, want version %d of %s", path, rec.Version, rec.Layer, recordVersion, layer)
	}
	// Bound what a forged record can make us hold.
	rec.Base = merge(tally{}, forged(rec.Base), s.cfg.limit)
	if rec.Session != nil {
		rec.Session.tally = merge(tally{}, forged(rec.Session.tally), s.cfg.limit)
	}
	return rec, nil
}

// forged returns t without the profile entries no layer gives: negative
// figures, or a path that is not local to the layer.
func forged(t tally) tally {
	t.Profile = slices.DeleteFunc(slices.Clone(t.Profile), func(f usage.FileAccess) bool {
		return f.Opens < 0 || f.Bytes < 0 || !filepath.IsLocal(f.Path)
	})
	return t
}

// writeLayer writes rec, and returns it as written: a record too large for
// a record file has its profiles halved (the least read paths dropped, the
// profile marked truncated) until it fits.
func (s *Store) writeLayer(rec layerRecord) (layerRecord, error) {
	name, err := layerFileName(rec.Layer)
	if err != nil {
		return rec, err
	}
	rec.Version = recordVersion
	for {
		err := writeJSON(filepath.Join(s.dir, profilesDir, name), rec, s.cfg.recordLimit)
		n := len(rec.Base.Profile)
		if rec.Session != nil {
			n += len(rec.Session.Profile)
		}
		if !errors.Is(err, errTooLarge) || n == 0 {
			if err != nil {
				return rec, fmt.Errorf("failed to write the usage record of layer %s: %w", rec.Layer, err)
			}
			return rec, nil
		}
		rec.Base = merge(tally{}, rec.Base, len(rec.Base.Profile)/2)
		if rec.Session != nil {
			sess := *rec.Session
			sess.tally = merge(tally{}, sess.tally, len(sess.Profile)/2)
			rec.Session = &sess
		}
	}
}

// Layer returns layer's usage across daemon runs, its live session
// included (asked of the source now; nothing is written); ok is false when
// nothing is recorded of it.
func (s *Store) Layer(ctx context.Context, layer digest.Digest) (u usage.LayerUsage, ok bool, err error) {
	if _, err := layerFileName(layer); err != nil {
		return usage.LayerUsage{}, false, err
	}
	s.refresh(ctx, false)
	return s.layer(ctx, layer)
}

// Recorded is Layer without asking the source for the live figures: what
// the store holds now. For callers on the mount path (prefetch), which must
// neither wait on the source nor move the readers' refresh throttle.
func (s *Store) Recorded(ctx context.Context, layer digest.Digest) (u usage.LayerUsage, ok bool, err error) {
	return s.layer(ctx, layer)
}

// layer is Layer with the live figures as last brought in.
func (s *Store) layer(ctx context.Context, layer digest.Digest) (u usage.LayerUsage, ok bool, err error) {
	if _, err := layerFileName(layer); err != nil {
		return usage.LayerUsage{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ll := s.live[layer]; ll != nil {
		return merge(ll.rec.Base, ll.last, s.cfg.limit).view(ll.rec, true), true, nil
	}
	rec, err := s.readLayer(layer)
	if isNotExist(err) {
		return usage.LayerUsage{}, false, nil
	}
	if err != nil {
		log.G(ctx).WithError(err).WithField("layer", layer).Warn("ignoring an unreadable usage record")
		return usage.LayerUsage{}, false, nil
	}
	return rec.total(s.cfg.limit).view(rec, false), true, nil
}
