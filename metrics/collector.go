package metrics

import (
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

type counterDesc struct {
	desc *prometheus.Desc
	get  func(*usage.LayerStats) int64
}

// CollectorOpt configures a Collector.
type CollectorOpt func(*Collector)

// WithLayerImage labels each layer's series with image = imageOf(layer):
// one image that uses the layer ("" when none is known). imageOf must
// answer the same for a layer as long as it is mounted, so that the label
// adds no series: there is still one series per metric and mounted layer.
func WithLayerImage(imageOf func(digest.Digest) string) CollectorOpt {
	return func(c *Collector) { c.imageOf = imageOf }
}

// Collector is a prometheus.Collector over a Source. It reads the numbers
// at scrape time and keeps no state of its own. Every per-layer series is
// labelled layer (the digest), mode (the accounting mode) and image (see
// WithLayerImage); a layer's series leave with its last unmount, so their
// number is bounded by the layers mounted.
type Collector struct {
	src      usage.Source
	imageOf  func(digest.Digest) string
	counters []counterDesc
	mounts   *prometheus.Desc
	removed  *prometheus.Desc
	errors   *prometheus.Desc
	lastSeen *prometheus.Desc
}

// NewCollector returns a Collector over src.
func NewCollector(src usage.Source, opts ...CollectorOpt) *Collector {
	layer := []string{"layer", "mode", "image"}
	c := func(name, help string, get func(*usage.LayerStats) int64) counterDesc {
		return counterDesc{desc: prometheus.NewDesc("cvmfs_snapshotter_layer_"+name, help, layer, nil), get: get}
	}
	col := &Collector{
		src:     src,
		imageOf: func(digest.Digest) string { return "" },
		counters: []counterDesc{
			c("lookups_total", "FUSE lookups served for the layer.", func(s *usage.LayerStats) int64 { return s.Lookups }),
			c("getattrs_total", "FUSE getattrs served for the layer.", func(s *usage.LayerStats) int64 { return s.Getattrs }),
			c("opens_total", "Files opened in the layer (in \"reads\" accounting: fetches of a file's content from its start; opens served from the page cache are not seen).", func(s *usage.LayerStats) int64 { return s.Opens }),
			c("readdirs_total", "Directories listed in the layer.", func(s *usage.LayerStats) int64 { return s.Readdirs }),
			c("readlinks_total", "Symlinks read in the layer.", func(s *usage.LayerStats) int64 { return s.Readlinks }),
			c("unique_files_opened", "Distinct files opened in the layer (in \"reads\" accounting: distinct files read).", func(s *usage.LayerStats) int64 { return s.UniqueFiles }),
			c("read_bytes_total", "Bytes read from the layer, each byte once while the page cache keeps it (in \"open\" accounting: sizes of the files opened).", func(s *usage.LayerStats) int64 { return s.BytesRead }),
			c("cache_hits_total", "Attribute cache hits for the layer.", func(s *usage.LayerStats) int64 { return s.CacheHits }),
			c("prefetch_files_total", "Files of the layer read ahead from the layer store by prefetch (not workload reads).", func(s *usage.LayerStats) int64 { return s.PrefetchFiles }),
			c("prefetch_bytes_total", "Bytes of the layer read ahead from the layer store by prefetch (not workload reads).", func(s *usage.LayerStats) int64 { return s.PrefetchBytes }),
			c("prefetch_hits_total", "Files of the layer a workload read after prefetch had read them.", func(s *usage.LayerStats) int64 { return s.PrefetchHits }),
			c("absent_names_total", "Lookups of names, and reads of extended attributes, that do not exist in the layer: overlayfs makes them in every layer as it merges directories; not errors.", func(s *usage.LayerStats) int64 { return s.Absent }),
			c("cache_misses_total", "Attribute cache misses for the layer.", func(s *usage.LayerStats) int64 { return s.CacheMisses }),
		},
		mounts:   prometheus.NewDesc("cvmfs_snapshotter_layer_mounts", "Current FUSE mounts of the layer.", layer, nil),
		removed:  prometheus.NewDesc("cvmfs_snapshotter_layer_removed", "1 while the layer store no longer holds the mounted layer (removed by the repository's garbage collection): its containers get ENOENT and new ones on it fail until the image is pulled again.", layer, nil),
		errors:   prometheus.NewDesc("cvmfs_snapshotter_layer_errors_total", "Errors answered for the layer, by errno: failures (EIO, ESTALE, an entry gone from the layer store, ...), never a name that does not exist (see absent_names_total).", []string{"layer", "mode", "image", "errno"}, nil),
		lastSeen: prometheus.NewDesc("cvmfs_snapshotter_layer_last_access_seconds", "Unix time of the layer's last access.", layer, nil),
	}
	for _, o := range opts {
		o(col)
	}
	return col
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, cd := range c.counters {
		ch <- cd.desc
	}
	ch <- c.mounts
	ch <- c.removed
	ch <- c.errors
	ch <- c.lastSeen
}

// Collect implements prometheus.Collector. A series that cannot be made
// (a label that is not valid UTF-8) is left out, not the whole scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	send := func(desc *prometheus.Desc, vt prometheus.ValueType, v float64, lv ...string) {
		if m, err := prometheus.NewConstMetric(desc, vt, v, lv...); err == nil {
			ch <- m
		}
	}
	stats, err := c.src.Stats()
	if err != nil {
		log.L.WithError(err).Warn("no per-layer figures for the metrics")
	}
	for _, st := range stats {
		lv := []string{st.Layer.String(), st.Accounting.String(), c.imageOf(st.Layer)}
		for _, cd := range c.counters {
			send(cd.desc, prometheus.CounterValue, float64(cd.get(&st)), lv...)
		}
		send(c.mounts, prometheus.GaugeValue, float64(st.Mounts), lv...)
		removed := 0.0
		if st.Removed {
			removed = 1
		}
		send(c.removed, prometheus.GaugeValue, removed, lv...)
		for errno, n := range st.Errors {
			send(c.errors, prometheus.CounterValue, float64(n), append(lv, errno)...)
		}
		if !st.LastAccess.IsZero() {
			send(c.lastSeen, prometheus.GaugeValue, float64(st.LastAccess.UnixNano())/1e9, lv...)
		}
	}
}
