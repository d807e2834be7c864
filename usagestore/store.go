package usagestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// ContentsFunc counts what a layer holds in the repository.
type ContentsFunc func(ctx context.Context, layer digest.Digest) (usage.Contents, error)

// Defaults.
const (
	// DefaultFlushInterval is how often live figures are written out, so
	// that a crash (kill -9) loses at most that much.
	DefaultFlushInterval = 30 * time.Second
)

// recordVersion is the version of every record file.
const recordVersion = 1

// errVersion says a record file is of another version than recordVersion.
func errVersion(v int) error {
	return fmt.Errorf("record version %d, want %d", v, recordVersion)
}

type config struct {
	src      usage.Source
	contents ContentsFunc
	interval time.Duration
	limit    int
	// recordLimit bounds a record file, written or read (maxRecordSize).
	recordLimit int64
}

// Opt configures a Store.
type Opt func(*config) error

// WithSource makes the store record the layers src serves. Without it the
// store records only images and fallbacks.
func WithSource(src usage.Source) Opt {
	return func(c *config) error {
		if src == nil {
			return fmt.Errorf("nil usage source: %w", errdefs.ErrInvalidArgument)
		}
		c.src = src
		return nil
	}
}

// WithContents gives the function that counts a layer's files and bytes for
// reports (each layer is counted once; the result is kept).
func WithContents(fn ContentsFunc) Opt {
	return func(c *config) error {
		if fn == nil {
			return fmt.Errorf("nil contents function: %w", errdefs.ErrInvalidArgument)
		}
		c.contents = fn
		return nil
	}
}

// WithFlushInterval sets how often live figures and new image records are
// written (default DefaultFlushInterval). 0 writes them only around
// unmounts and at Close (image records then at once); negative is an error.
func WithFlushInterval(d time.Duration) Opt {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("flush interval %v is negative: %w", d, errdefs.ErrInvalidArgument)
		}
		c.interval = d
		return nil
	}
}

// WithProfileLimit bounds the paths kept in each layer's merged profile
// (default usage.DefaultProfileLimit; 0 keeps none). Negative is an error.
func WithProfileLimit(n int) Opt {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("profile limit %d is negative: %w", n, errdefs.ErrInvalidArgument)
		}
		c.limit = n
		return nil
	}
}

// Store keeps usage records under a directory: the per-layer profiles, the
// images and the layer contents, each under its own lock. Safe for
// concurrent use; Close stops it.
type Store struct {
	cfg config

	profiles *profiles
	images   *images
	contents *contents

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating it 0700 if needed) the store in dir and, with a
// flush interval, starts writing live figures periodically. Records that
// cannot be read are logged and ignored; the temporary files of writes a
// crash interrupted are removed.
func Open(ctx context.Context, dir string, opts ...Opt) (*Store, error) {
	cfg := config{interval: DefaultFlushInterval, limit: usage.DefaultProfileLimit, recordLimit: maxRecordSize}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, profilesDir), 0o700); err != nil {
		return nil, fmt.Errorf("failed to create usage store %s: %w", dir, err)
	}
	removeTemporary(ctx, dir)
	removeTemporary(ctx, filepath.Join(dir, profilesDir))
	s := &Store{
		cfg:      cfg,
		profiles: newProfiles(filepath.Join(dir, profilesDir), cfg.src, cfg.limit, cfg.recordLimit),
		images:   newImages(ctx, filepath.Join(dir, imagesFile), cfg.recordLimit),
		contents: newContents(ctx, filepath.Join(dir, contentsFile), cfg.contents, cfg.recordLimit),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if cfg.interval > 0 {
		go s.loop(context.WithoutCancel(ctx))
	} else {
		close(s.done)
	}
	return s, nil
}

func (s *Store) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.Flush(ctx); err != nil {
				log.G(ctx).WithError(err).Warn("failed to write usage records")
			}
		}
	}
}

// Flush writes the live figures of every layer that changed since the last
// flush, folds the layers no longer mounted, and writes new image records.
func (s *Store) Flush(ctx context.Context) error {
	return errors.Join(s.profiles.flush(ctx), s.images.flush())
}

// Unmounting runs unmount, which may end a layer's last mount (and with it
// the live figures of its session), between two flushes: the figures up to
// the unmount are folded into the layer's record.
//
// The store is not locked while unmount runs, so unmounts run in parallel:
// the figures a layer's last flush saw are those of its end, since nothing
// reads a layer whose last mount is going.
func (s *Store) Unmounting(ctx context.Context, unmount func() error) error {
	if err := s.profiles.flush(ctx); err != nil {
		log.G(ctx).WithError(err).Warn("failed to write usage records before an unmount")
	}
	err := unmount()
	if ferr := s.profiles.flush(ctx); ferr != nil {
		log.G(ctx).WithError(ferr).Warn("failed to write usage records after an unmount")
	}
	return err
}

// Close stops the periodic flush and the contents counts in flight (and
// waits for them), and flushes a last time. Idempotent.
func (s *Store) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.contents.close()
		if s.cfg.interval > 0 {
			close(s.stop)
		}
		<-s.done
		s.closeErr = s.Flush(ctx)
	})
	return s.closeErr
}

// Layer returns layer's usage across daemon runs, its live session
// included (asked of the source now; nothing is written); ok is false when
// nothing is recorded of it.
func (s *Store) Layer(ctx context.Context, layer digest.Digest) (u usage.LayerUsage, ok bool, err error) {
	if _, err := layerFileName(layer); err != nil {
		return usage.LayerUsage{}, false, err
	}
	s.profiles.refresh(ctx, false)
	return s.profiles.layer(ctx, layer)
}

// Recorded is Layer without asking the source for the live figures: what
// the store holds now. For callers on the mount path (prefetch), which must
// neither wait on the source nor move the readers' refresh throttle.
func (s *Store) Recorded(ctx context.Context, layer digest.Digest) (u usage.LayerUsage, ok bool, err error) {
	return s.profiles.layer(ctx, layer)
}

// Record adds a layer unpack to its image's record, written at the next
// flush (at once without a flush interval).
func (s *Store) Record(ctx context.Context, ev snapshot.LayerEvent) {
	s.images.record(ev)
	if s.cfg.interval == 0 {
		if err := s.images.flush(); err != nil {
			log.G(ctx).WithError(err).Warn("failed to write image usage records")
		}
	}
}

// ImageOf returns the first image recorded to have layer served from the
// layer store ("" if none): the same answer for as long as the store is
// open, so that it can label a layer's series.
func (s *Store) ImageOf(layer digest.Digest) string { return s.images.imageOf(layer) }

// Images returns every image recorded, by reference.
func (s *Store) Images() []usage.ImageUsage { return s.images.all() }

// Image returns the record of ref.
func (s *Store) Image(ref string) (usage.ImageUsage, bool) { return s.images.image(ref) }

// Missing returns the images not fully served from the layer store at
// their layers' last unpack, most pulled first (then most recently seen).
func (s *Store) Missing() []usage.ImageUsage { return s.images.missing() }
