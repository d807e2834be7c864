package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/metrics"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// adminSocket returns the admin socket's path: admin-socket, or
// <root>/admin.sock.
func adminSocket(cfg config, f flags) string {
	if cfg.AdminSocket != "" {
		return cfg.AdminSocket
	}
	return filepath.Join(f.root, "admin.sock")
}

// httpEndpoints are the daemon's HTTP servers over one registry: the admin
// socket, always, with every endpoint; and metrics-address when set.
type httpEndpoints struct {
	servers []*http.Server
	// metrics is the address metrics-address listens on; nil when off.
	metrics net.Addr
}

// serveHTTP starts the admin socket at admin (0600: /metrics, /stats,
// /stats/profile; a failure there is logged, not returned) and, when cfg.MetricsAddress is set, the metrics
// endpoint there. A TCP metrics endpoint serves /metrics and /stats; its
// /stats/profile (every file each workload opened) answers 403 unless
// cfg.ExposeProfile. A unix:// one is a 0600 socket and serves everything.
//
// records (may be nil) serves /usage/ (usage records, which name files as
// the profile does) wherever /stats/profile is served; over TCP its
// reports give only the layer contents already counted (a count walks the
// layer in the repository: only the admin socket's reports start one).
func serveHTTP(ctx context.Context, cfg config, admin string, src metrics.Source, records *usagestore.Store) (*httpEndpoints, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		var copts []metrics.CollectorOpt
		if records != nil {
			copts = append(copts, metrics.WithLayerImage(records.ImageOf))
		}
		if err := reg.Register(metrics.NewCollector(src, copts...)); err != nil {
			return nil, err
		}
	}
	e := &httpEndpoints{}
	// The admin socket is for operators: failing to make it (a full root
	// filesystem) must not stop the snapshotter, nor crash-loop it under a
	// supervisor.
	l, err := unixsock.Listen(admin)
	if err != nil {
		log.G(ctx).WithError(err).WithField("address", admin).Error("admin socket not served; /metrics, /stats and /usage/ unavailable there")
	} else {
		e.start(ctx, l, withRecords(metrics.Handler(reg, src), records, false))
		log.G(ctx).WithField("address", admin).Info("serving /metrics, /stats, /stats/profile and /usage/ on the admin socket")
	}

	if cfg.MetricsAddress == "" {
		return e, nil
	}
	var opts []metrics.HandlerOpt
	path, isUnix := strings.CutPrefix(cfg.MetricsAddress, "unix://")
	if isUnix {
		l, err = unixsock.Listen(path)
	} else {
		l, err = net.Listen("tcp", cfg.MetricsAddress)
		if !cfg.ExposeProfile {
			opts = append(opts, metrics.WithoutProfile())
		}
	}
	if err != nil {
		e.stop(ctx)
		return nil, fmt.Errorf("metrics-address: %w", err)
	}
	e.metrics = l.Addr()
	h := metrics.Handler(reg, src, opts...)
	if isUnix || cfg.ExposeProfile {
		h = withRecords(h, records, !isUnix)
	}
	e.start(ctx, l, h)
	entry := log.G(ctx).WithField("address", cfg.MetricsAddress)
	switch {
	case isUnix || cfg.ExposeProfile:
		entry.Info("serving /metrics, /stats and /stats/profile")
	default:
		entry.Info("serving /metrics and /stats (/stats/profile only on the admin socket)")
	}
	if !isUnix && cfg.ExposeProfile && !isLoopback(cfg.MetricsAddress) {
		// The per-file profile tells which files workloads read.
		entry.Warn("expose-profile: per-file access profiles are served beyond loopback")
	}
	return e, nil
}

// withRecords serves /usage/ from records (if not nil), the rest from h;
// cachedOnly: without starting counts of layer contents.
func withRecords(h http.Handler, records *usagestore.Store, cachedOnly bool) http.Handler {
	if records == nil {
		return h
	}
	var opts []usagestore.HandlerOpt
	if cachedOnly {
		opts = append(opts, usagestore.WithoutCounting())
	}
	mux := http.NewServeMux()
	mux.Handle("/usage/", records.Handler(opts...))
	mux.Handle("/", h)
	return mux
}

// start serves h on l until stop.
func (e *httpEndpoints) start(ctx context.Context, l net.Listener, h http.Handler) {
	srv := metrics.NewServer(h)
	e.servers = append(e.servers, srv)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("HTTP endpoint stopped")
		}
	}()
}

// stop shuts every server down, waiting a few seconds for open requests.
func (e *httpEndpoints) stop(ctx context.Context) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, srv := range e.servers {
		_ = srv.Shutdown(sctx)
	}
}

// isLoopback reports whether a host:port address listens on loopback only.
func isLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
