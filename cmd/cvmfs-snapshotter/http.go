package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/adminapi"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/metrics"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// httpEndpoints are the daemon's HTTP servers over one registry: the admin
// socket, always, with every endpoint; and metrics-address when set.
type httpEndpoints struct {
	servers []*http.Server
	// metrics is the address metrics-address listens on; nil when off.
	metrics net.Addr
}

// serveHTTP starts the admin socket at admin (0600, every route; a failure
// there is logged, not returned) and, when cfg.MetricsAddress is set, the
// metrics endpoint there, each serving the routes the adminapi package's
// rules give its kind of listener (adminapi.MetricsListener). records (may be
// nil) serves the /usage/ routes.
func serveHTTP(ctx context.Context, cfg config.Config, admin string, src usage.Source, records *usagestore.Store) (*httpEndpoints, error) {
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
		e.start(ctx, l, adminapi.Handler(adminapi.Trusted, reg, src, records))
		log.G(ctx).WithField("address", admin).Info("serving /metrics, /stats, /stats/profile and /usage/ on the admin socket")
	}

	if cfg.MetricsAddress == "" {
		return e, nil
	}
	kind := adminapi.MetricsListener(cfg.MetricsAddress, cfg.ExposeProfile)
	if path, ok := strings.CutPrefix(cfg.MetricsAddress, "unix://"); ok {
		l, err = unixsock.Listen(path)
	} else {
		l, err = net.Listen("tcp", cfg.MetricsAddress)
	}
	if err != nil {
		e.stop(ctx)
		return nil, fmt.Errorf("metrics-address: %w", err)
	}
	e.metrics = l.Addr()
	e.start(ctx, l, adminapi.Handler(kind, reg, src, records))
	entry := log.G(ctx).WithField("address", cfg.MetricsAddress)
	switch kind {
	case adminapi.Public:
		entry.Info("serving /metrics and /stats (/stats/profile only on the admin socket)")
	default:
		entry.Info("serving /metrics, /stats and /stats/profile")
	}
	if kind == adminapi.PublicProfiles && !isLoopback(cfg.MetricsAddress) {
		// The per-file profile tells which files workloads read.
		entry.Warn("expose-profile: per-file access profiles are served beyond loopback")
	}
	return e, nil
}

// start serves h on l until stop.
func (e *httpEndpoints) start(ctx context.Context, l net.Listener, h http.Handler) {
	srv := adminapi.NewServer(h)
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
