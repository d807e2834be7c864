package usagestore

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
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

type imagesRecord struct {
	Version int
	Images  []usage.ImageUsage
}

// images keeps the record of images (images.json): each image's layers as
// unpacked, which were served from the layer store and why the others were
// pulled. Safe for concurrent use.
type images struct {
	// path is the record file.
	path string
	// recordLimit bounds the record file, written or read.
	recordLimit int64

	// mu guards the fields below.
	mu     sync.Mutex
	images map[string]*usage.ImageUsage
	// dirty is set when images changed since the last write.
	dirty bool
	// layerImage is the first image seen served with each layer (imageOf).
	layerImage map[digest.Digest]string
}

// newImages returns the images recorded in path; an unreadable record is
// logged and ignored (and replaced at the next write).
func newImages(ctx context.Context, path string, recordLimit int64) *images {
	im := &images{path: path, recordLimit: recordLimit, images: map[string]*usage.ImageUsage{}, layerImage: map[digest.Digest]string{}}
	im.load(ctx)
	return im
}

// record adds a layer unpack to its image's record (written at the next
// flush).
func (im *images) record(ev snapshot.LayerEvent) {
	ref := cut(ev.Image)
	key := imageLayer{Layer: ev.Layer}
	if ev.Layer == "" {
		key.RawLayer = cut(ev.RawLayer)
	}
	now := time.Now()
	im.mu.Lock()
	img := im.images[ref]
	if img == nil {
		im.evictImage()
		img = &usage.ImageUsage{Image: ref}
		im.images[ref] = img
	}
	img.LastSeen = now
	i := slices.IndexFunc(img.Layers, func(l usage.ImageLayer) bool { return l.Layer == key.Layer && l.RawLayer == key.RawLayer })
	if i < 0 && len(img.Layers) < maxImageLayers {
		img.Layers = append(img.Layers, usage.ImageLayer{Layer: key.Layer, RawLayer: key.RawLayer})
		i = len(img.Layers) - 1
	}
	if ev.Served && ev.Layer != "" {
		if _, ok := im.layerImage[ev.Layer]; !ok {
			im.layerImage[ev.Layer] = ref
		}
	}
	if i >= 0 {
		l := &img.Layers[i]
		l.Served, l.Reason, l.LastSeen = ev.Served, cut(string(ev.Reason)), now
		if !ev.Served {
			l.Pulls++
		}
	}
	if !ev.Served {
		img.Pulls++
	}
	im.dirty = true
	im.mu.Unlock()
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
// im.mu is held.
func (im *images) evictImage() {
	if len(im.images) < maxImages {
		return
	}
	var oldest *usage.ImageUsage
	for _, img := range im.images {
		if oldest == nil || img.LastSeen.Before(oldest.LastSeen) {
			oldest = img
		}
	}
	delete(im.images, oldest.Image)
}

// imageOf returns the first image recorded to have layer served from the
// layer store ("" if none).
func (im *images) imageOf(layer digest.Digest) string {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.layerImage[layer]
}

// all returns every image recorded, by reference.
func (im *images) all() []usage.ImageUsage {
	im.mu.Lock()
	out := make([]usage.ImageUsage, 0, len(im.images))
	for _, img := range im.images {
		c := *img
		c.Layers = slices.Clone(img.Layers)
		out = append(out, c)
	}
	im.mu.Unlock()
	slices.SortFunc(out, func(a, b usage.ImageUsage) int { return strings.Compare(a.Image, b.Image) })
	return out
}

// image returns the record of ref.
func (im *images) image(ref string) (usage.ImageUsage, bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	img := im.images[ref]
	if img == nil {
		return usage.ImageUsage{}, false
	}
	c := *img
	c.Layers = slices.Clone(img.Layers)
	return c, true
}

// missing returns the images not fully served from the layer store at
// their layers' last unpack, most pulled first (then most recently seen).
func (im *images) missing() []usage.ImageUsage {
	var out []usage.ImageUsage
	for _, img := range im.all() {
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

// flush writes the record if it changed since the last write.
func (im *images) flush() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	if !im.dirty {
		return nil
	}
	for {
		rec := imagesRecord{Version: recordVersion}
		for _, img := range im.images {
			rec.Images = append(rec.Images, *img)
		}
		slices.SortFunc(rec.Images, func(a, b usage.ImageUsage) int { return strings.Compare(a.Image, b.Image) })
		err := writeJSON(im.path, rec, im.recordLimit)
		if errors.Is(err, errTooLarge) && len(im.images) > 0 {
			// Too many for a record file: the least recently seen half
			// goes, as when there are more than maxImages.
			im.evictOldest(len(im.images) - len(im.images)/2)
			continue
		}
		if err != nil {
			return err
		}
		im.dirty = false
		return nil
	}
}

// evictOldest drops the n least recently seen images. im.mu is held.
func (im *images) evictOldest(n int) {
	imgs := slices.Collect(maps.Values(im.images))
	slices.SortFunc(imgs, func(a, b *usage.ImageUsage) int { return a.LastSeen.Compare(b.LastSeen) })
	for _, img := range imgs[:min(n, len(imgs))] {
		delete(im.images, img.Image)
	}
}

// load reads the image records; an unreadable file is logged and ignored
// (and replaced at the next write).
func (im *images) load(ctx context.Context) {
	var rec imagesRecord
	if !readRecord(ctx, im.path, "image usage record", &rec, &rec.Version, im.recordLimit) {
		return
	}
	for _, img := range rec.Images {
		if len(im.images) >= maxImages {
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
		im.images[c.Image] = &c
		for _, l := range c.Layers {
			if _, ok := im.layerImage[l.Layer]; l.Served && l.Layer != "" && !ok {
				im.layerImage[l.Layer] = c.Image
			}
		}
	}
}
