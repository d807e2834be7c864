package adminapi

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/metrics"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// The routes of the admin API.
const (
	// PathMetrics serves the Prometheus metrics.
	PathMetrics = "/metrics"
	// PathStats serves the per-layer accounting of the layers mounted now
	// ([]usage.LayerStats).
	PathStats = "/stats"
	// PathStatsProfile?layer=D serves one mounted layer's per-file access
	// profile since its mount ([]usage.FileAccess).
	PathStatsProfile = "/stats/profile"
	// PathUsageProfile?layer=D serves a layer's recorded usage with its
	// merged profile (usage.LayerUsage); ?image=R the same for each layer
	// of image R served from the store ([]usage.LayerUsage).
	PathUsageProfile = "/usage/profile"
	// PathUsageImages serves every image recorded ([]usage.ImageUsage).
	PathUsageImages = "/usage/images"
	// PathUsageMissing serves the images not fully served, most pulled
	// first ([]usage.ImageUsage).
	PathUsageMissing = "/usage/missing"
	// PathUsageReport?image=R... serves per-layer shares read
	// ([]usage.ReportRow).
	PathUsageReport = "/usage/report"
)

// Listener is a kind of listener of the admin API, by what it serves.
type Listener int

const (
	// Trusted is a 0600 unix socket: the admin socket, or a unix://
	// metrics-address. It serves every route; its reports start the count
	// of a layer's contents not counted yet.
	Trusted Listener = iota
	// Public is a TCP metrics-address: /metrics and /stats. /stats/profile
	// answers 403 and the /usage/ routes are not served (404): they name
	// every file workloads read.
	Public
	// PublicProfiles is a TCP metrics-address with expose-profile: every
	// route, but its reports give only the layer contents already counted
	// (a count walks the layer in the repository).
	PublicProfiles
)

// MetricsListener returns the kind of a metrics-address: Trusted for
// unix:///path, Public for host:port, PublicProfiles for host:port with
// exposeProfile.
func MetricsListener(address string, exposeProfile bool) Listener {
	switch {
	case isUnix(address):
		return Trusted
	case exposeProfile:
		return PublicProfiles
	default:
		return Public
	}
}

// Handler serves the routes l serves: PathMetrics from g, PathStats and
// PathStatsProfile from src (nil in bind mode: empty arrays), the usage
// routes from records (nil: not served).
func Handler(l Listener, g prometheus.Gatherer, src usage.Source, records *usagestore.Store) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(PathMetrics, promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.Handle(PathStats, metrics.StatsHandler(src))
	if l == Public {
		mux.HandleFunc(PathStatsProfile, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "per-file access profiles are not served on this endpoint", http.StatusForbidden)
		})
		return mux
	}
	mux.Handle(PathStatsProfile, metrics.ProfileHandler(src))
	if records == nil {
		return mux
	}
	var opts []usagestore.HandlerOpt
	if l != Trusted {
		opts = append(opts, usagestore.WithoutCounting())
	}
	mux.Handle("GET "+PathUsageProfile, records.ProfileHandler())
	mux.Handle("GET "+PathUsageImages, records.ImagesHandler())
	mux.Handle("GET "+PathUsageMissing, records.MissingHandler())
	mux.Handle("GET "+PathUsageReport, records.ReportHandler(opts...))
	return mux
}
