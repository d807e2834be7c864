package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/metrics"
)

// serveMetrics starts the HTTP endpoint (/metrics, /stats) when configured
// and returns the function that stops it.
func serveMetrics(ctx context.Context, cfg config, src metrics.Source) (func(), error) {
	if cfg.MetricsAddress == "" {
		return func() {}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		if err := reg.Register(metrics.NewCollector(src)); err != nil {
			return nil, err
		}
	}
	l, err := listenHTTP(cfg.MetricsAddress)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: metrics.Handler(reg, src), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("metrics server stopped")
		}
	}()
	log.G(ctx).WithField("address", cfg.MetricsAddress).Info("serving /metrics and /stats")
	if !strings.HasPrefix(cfg.MetricsAddress, "unix://") && !isLoopback(cfg.MetricsAddress) {
		// The per-file profile tells which files workloads read.
		log.G(ctx).WithField("address", cfg.MetricsAddress).Warn("metrics endpoint is reachable beyond loopback; it exposes per-file access profiles")
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}, nil
}

// listenHTTP listens on host:port or unix:///path (a socket made 0600).
func listenHTTP(address string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
			return nil, err
		}
		_ = os.Remove(path)
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		return l, os.Chmod(path, 0o600)
	}
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return l, nil
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
