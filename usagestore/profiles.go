package usagestore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// profilesDir holds the layer record files, under the store's directory.
const profilesDir = "profiles"

// profiles keeps the per-layer profiles: the live figures of the mounted
// layers, brought in from the source, and the record file of each layer
// (profiles/<hex>.json), written at each flush. Safe for concurrent use.
type profiles struct {
	// dir is the directory of the record files.
	dir string
	src usage.Source
	// limit bounds the paths kept in a layer's merged profile.
	limit int
	// recordLimit bounds a record file, written or read.
	recordLimit int64

	// mu guards live, the flush sequence and the record files.
	mu   sync.Mutex
	live map[digest.Digest]*liveLayer
	// fetched numbers the flushes that asked the source; applied is the
	// last applied (an older one is dropped).
	fetched, applied uint64
	// refreshed is when the last refresh for readers began.
	refreshed time.Time
}

// newProfiles returns the profiles of the record files in dir, with the
// live figures of src (none when src is nil).
func newProfiles(dir string, src usage.Source, limit int, recordLimit int64) *profiles {
	return &profiles{dir: dir, src: src, limit: limit, recordLimit: recordLimit, live: map[digest.Digest]*liveLayer{}}
}

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

// flush writes the layers whose live figures moved and folds those no
// longer live.
func (p *profiles) flush(ctx context.Context) error { return p.collect(ctx, true) }

// refresh brings the live figures in without writing anything (they are
// written at the next flush): for readers, who must not make the store
// write (an fsync per layer) nor hold p.mu for long. throttled skips it if
// a refresh began less than refreshInterval ago.
func (p *profiles) refresh(ctx context.Context, throttled bool) {
	p.mu.Lock()
	skip := throttled && time.Since(p.refreshed) < refreshInterval
	if !skip {
		p.refreshed = time.Now()
	}
	p.mu.Unlock()
	if skip {
		return
	}
	if err := p.collect(ctx, false); err != nil {
		log.G(ctx).WithError(err).Warn("failed to read the live usage figures")
	}
}

// refreshInterval is the least time between two refreshes for readers.
const refreshInterval = time.Second

// collect asks the source for the live figures and applies them; write
// writes the layers whose figures moved and folds those no longer live
// (without it the changes are left for the next flush). p.mu is not held:
// the source is asked without it (a remote one may take seconds), then the
// figures are applied under it. When the source cannot give its figures
// nothing is folded: the layers stay live.
func (p *profiles) collect(ctx context.Context, write bool) error {
	if p.src == nil {
		return nil
	}
	p.mu.Lock()
	p.fetched++
	seq := p.fetched
	p.mu.Unlock()
	stats, err := p.src.Stats()
	if err != nil {
		return fmt.Errorf("failed to read the live usage figures: %w", err)
	}
	// The profiles of the layers whose figures moved.
	var errs []error
	profiles := map[digest.Digest][]usage.FileAccess{}
	for _, st := range p.moved(stats) {
		files, err := p.src.Profile(st.Layer)
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to read the profile of layer %s: %w", st.Layer, err))
			continue
		}
		profiles[st.Layer] = files
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq <= p.applied {
		// A flush that asked later has applied newer figures.
		return errors.Join(errs...)
	}
	p.applied = seq
	seen := map[digest.Digest]bool{}
	for _, st := range stats {
		if seen[st.Layer] {
			continue
		}
		seen[st.Layer] = true
		start := unixNano(st.FirstAccess)
		ll := p.live[st.Layer]
		switch {
		case ll == nil:
			ll = p.loadLive(ctx, st.Layer, start)
			if ll == nil {
				continue
			}
			p.live[st.Layer] = ll
		case ll.start != 0 && start != ll.start:
			// Unmounted everywhere and mounted again since the last
			// flush: the old session ended with the figures last seen.
			ll.rec.Base = merge(ll.rec.Base, ll.last, p.limit)
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
		written, err := p.writeLayer(rec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ll.rec.Base, ll.written = written.Base, true
	}
	for d, ll := range p.live {
		if seen[d] || !write {
			continue
		}
		rec := ll.rec
		rec.Base = merge(rec.Base, ll.last, p.limit)
		rec.Session = nil
		if _, err := p.writeLayer(rec); err != nil {
			errs = append(errs, err)
		}
		delete(p.live, d)
	}
	return errors.Join(errs...)
}

// moved returns the stats (one per layer) whose figures differ from those
// last written.
func (p *profiles) moved(stats []usage.LayerStats) []usage.LayerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []usage.LayerStats
	seen := map[digest.Digest]bool{}
	for _, st := range stats {
		if seen[st.Layer] {
			continue
		}
		seen[st.Layer] = true
		ll := p.live[st.Layer]
		if ll == nil || !ll.written || ll.start != unixNano(st.FirstAccess) || ll.sig != sigOf(st) {
			out = append(out, st)
		}
	}
	return out
}

// loadLive returns the live state of layer, newly mounted with a session
// that started at start, from its record (if any). nil if layer cannot
// name a record.
func (p *profiles) loadLive(ctx context.Context, layer digest.Digest, start int64) *liveLayer {
	rec, err := p.readLayer(layer)
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
		rec.Base = rec.total(p.limit)
	}
	rec.Session = nil
	return &liveLayer{rec: rec, start: start}
}

// readLayer reads and checks layer's record file.
func (p *profiles) readLayer(layer digest.Digest) (layerRecord, error) {
	name, err := layerFileName(layer)
	if err != nil {
		return layerRecord{}, err
	}
	var rec layerRecord
	path := filepath.Join(p.dir, name)
	if err := readJSON(path, &rec, p.recordLimit); err != nil {
		return layerRecord{}, err
	}
	if rec.Version != recordVersion || rec.Layer != layer {
		return layerRecord{}, fmt.Errorf("%s: version %d of layer %q, want version %d of %s", path, rec.Version, rec.Layer, recordVersion, layer)
	}
	// Bound what a forged record can make us hold.
	rec.Base = merge(tally{}, forged(rec.Base), p.limit)
	if rec.Session != nil {
		rec.Session.tally = merge(tally{}, forged(rec.Session.tally), p.limit)
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
func (p *profiles) writeLayer(rec layerRecord) (layerRecord, error) {
	name, err := layerFileName(rec.Layer)
	if err != nil {
		return rec, err
	}
	rec.Version = recordVersion
	for {
		err := writeJSON(filepath.Join(p.dir, name), rec, p.recordLimit)
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

// layer returns layer's usage across daemon runs, its live session
// included with the figures as last brought in; ok is false when nothing
// is recorded of it.
func (p *profiles) layer(ctx context.Context, layer digest.Digest) (u usage.LayerUsage, ok bool, err error) {
	if _, err := layerFileName(layer); err != nil {
		return usage.LayerUsage{}, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if ll := p.live[layer]; ll != nil {
		return merge(ll.rec.Base, ll.last, p.limit).view(ll.rec, true), true, nil
	}
	rec, err := p.readLayer(layer)
	if isNotExist(err) {
		return usage.LayerUsage{}, false, nil
	}
	if err != nil {
		log.G(ctx).WithError(err).WithField("layer", layer).Warn("ignoring an unreadable usage record")
		return usage.LayerUsage{}, false, nil
	}
	return rec.total(p.limit).view(rec, false), true, nil
}
