package usagestore

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

const (
	imagesFile = "images.json"
	// maxImages bounds the images recorded; the least recently seen go
	// first.
	maxImages = 10_000
	// maxImageLayers bounds the layers recorded per image.
	maxImageLayers = 512
	// maxRefLen bounds an image reference or a raw label kept (longer ones
	// are no valid reference or digest and are cut).
	maxRefLen = 1024
)

// Event is one layer unpack: served from the layer store, or pulled and why.
type Event struct {
	// Image is the image reference; "" when unknown.
	Image string
	// Layer is the layer digest; "" when the label was absent or malformed
	// (RawLayer then holds the label, if any).
	Layer    digest.Digest
	RawLayer string
	Served   bool
	// Reason says why the layer was pulled; "" when Served.
	Reason string
}

type imagesRecord struct {
	Version int
	Images  []usage.ImageUsage
}

// Record adds a layer unpack to its image's record.
func (s *Store) Record(ctx context.Context, ev Event) {
	ref := cut(ev.Image)
	key := imageLayer{Layer: ev.Layer}
	if ev.Layer == "" {
		key.RawLayer = cut(ev.RawLayer)
	}
	now := time.Now()
	s.imu.Lock()
	img := s.images[ref]
	if img == nil {
		s.evictImage()
		img = &usage.ImageUsage{Image: ref}
		s.images[ref] = img
	}
	img.LastSeen = now
	i := slices.IndexFunc(img.Layers, func(l usage.ImageLayer) bool { return l.Layer == key.Layer && l.RawLayer == key.RawLayer })
	if i < 0 && len(img.Layers) < maxImageLayers {
		img.Layers = append(img.Layers, usage.ImageLayer{Layer: key.Layer, RawLayer: key.RawLayer})
		i = len(img.Layers) - 1
	}
	if ev.Served && ev.Layer != "" {
		if _, ok := s.layerImage[ev.Layer]; !ok {
			s.layerImage[ev.Layer] = ref
		}
	}
	if i >= 0 {
		l := &img.Layers[i]
		l.Served, l.Reason, l.LastSeen = ev.Served, cut(ev.Reason), now
		if !ev.Served {
			l.Pulls++
		}
	}
	if !ev.Served {
		img.Pulls++
	}
	s.imagesDirty = true
	s.imu.Unlock()
	if s.cfg.interval == 0 {
		if err := s.flushImages(); err != nil {
			log.G(ctx).WithError(err).Warn("failed to write image usage records")
		}
	}
}

type imageLayer struct {
	Layer    digest.Digest
	RawLayer string
}

// cut returns s as valid UTF-8 (invalid bytes replaced) of at most
// maxRefLen bytes, cut on a rune boundary: it names metrics series.
func cut(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxRefLen {
		return s
	}
	n := maxRefLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// evictImage drops the least recently seen image when the record is full.
// s.imu is held.
func (s *Store) evictImage() {
	if len(s.images) < maxImages {
		return
	}
	var oldest *usage.ImageUsage
	for _, img := range s.images {
		if oldest == nil || img.LastSeen.Before(oldest.LastSeen) {
			oldest = img
		}
	}
	delete(s.images, oldest.Image)
}

// ImageOf returns the first image recorded to have layer served from the
// layer store ("" if none): the same answer for as long as the store is
// open, so that it can label a layer's series.
func (s *Store) ImageOf(layer digest.Digest) string {
	s.imu.Lock()
	defer s.imu.Unlock()
	return s.layerImage[layer]
}

// Images returns every image recorded, by reference.
func (s *Store) Images() []usage.ImageUsage {
	s.imu.Lock()
	out := make([]usage.ImageUsage, 0, len(s.images))
	for _, img := range s.images {
		c := *img
		c.Layers = slices.Clone(img.Layers)
		out = append(out, c)
	}
	s.imu.Unlock()
	slices.SortFunc(out, func(a, b usage.ImageUsage) int { return strings.Compare(a.Image, b.Image) })
	return out
}

// Image returns the record of ref.
func (s *Store) Image(ref string) (usage.ImageUsage, bool) {
	s.imu.Lock()
	defer s.imu.Unlock()
	img := s.images[ref]
	if img == nil {
		return usage.ImageUsage{}, false
	}
	c := *img
	c.Layers = slices.Clone(img.Layers)
	return c, true
}

// Missing returns the images not fully served from the layer store at
// their layers' last unpack, most pulled first (then most recently seen).
func (s *Store) Missing() []usage.ImageUsage {
	var out []usage.ImageUsage
	for _, img := range s.Images() {
		if !img.FullyServed() {
			out = append(out, img)
		}
	}
	slices.SortStableFunc(out, func(a, b usage.ImageUsage) int {
		if c := cmp.Compare(b.Pulls, a.Pulls); c != 0 {
			return c
		}
		return b.LastSeen.Compare(a.LastSeen)
	})
	return out
}

func (s *Store) flushImages() error {
	s.imu.Lock()
	defer s.imu.Unlock()
	if !s.imagesDirty {
		return nil
	}
	for {
		rec := imagesRecord{Version: recordVersion}
		for _, img := range s.images {
			rec.Images = append(rec.Images, *img)
		}
		slices.SortFunc(rec.Images, func(a, b usage.ImageUsage) int { return strings.Compare(a.Image, b.Image) })
		err := writeJSON(filepath.Join(s.dir, imagesFile), rec, s.cfg.recordLimit)
		if errors.Is(err, errTooLarge) && len(s.images) > 0 {
			// Too many for a record file: the least recently seen half
			// goes, as when there are more than maxImages.
			s.evictOldest(len(s.images) - len(s.images)/2)
			continue
		}
		if err != nil {
			return err
		}
		s.imagesDirty = false
		return nil
	}
}

// evictOldest drops the n least recently seen images. s.imu is held.
func (s *Store) evictOldest(n int) {
	imgs := slices.Collect(maps.Values(s.images))
	slices.SortFunc(imgs, func(a, b *usage.ImageUsage) int { return a.LastSeen.Compare(b.LastSeen) })
	for _, img := range imgs[:min(n, len(imgs))] {
		delete(s.images, img.Image)
	}
}

// loadImages reads the image records; an unreadable file is logged and
// ignored (and replaced at the next write).
func (s *Store) loadImages(ctx context.Context) {
	var rec imagesRecord
	path := filepath.Join(s.dir, imagesFile)
	if !readRecord(ctx, path, "image usage record", &rec, &rec.Version, s.cfg.recordLimit) {
		return
	}
	for _, img := range rec.Images {
		if len(s.images) >= maxImages {
			break
		}
		img.Image = cut(img.Image)
		if len(img.Layers) > maxImageLayers {
			img.Layers = img.Layers[:maxImageLayers]
		}
		for i, l := range img.Layers {
			if l.Layer == "" {
				continue
			}
			if _, err := layerdigest.Parse(l.Layer.String()); err != nil {
				// Forged: keep it as a raw label, never as a digest.
				img.Layers[i].Layer, img.Layers[i].RawLayer = "", cut(l.Layer.String())
			}
		}
		c := img
		s.images[c.Image] = &c
		for _, l := range c.Layers {
			if _, ok := s.layerImage[l.Layer]; l.Served && l.Layer != "" && !ok {
				s.layerImage[l.Layer] = c.Image
			}
		}
	}
}
