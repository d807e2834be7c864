// Package metrics exposes the per-layer accounting of the FUSE layer
// filesystem: as Prometheus metrics (a Collector, registered on a caller's
// prometheus.Registerer) and as JSON (StatsHandler, ProfileHandler; adminapi gives them their
// routes) for cvmfsctl and the demo.
//
// It reads numbers; it neither mounts nor changes anything.
package metrics
