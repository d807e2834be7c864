package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
)

// repoName is the repository the daemon is configured for.
const repoName = "e2e.local"

// startSnapshotter writes the daemon's config and starts cvmfs-snapshotter
// in dir serving repoDir, waiting until its socket accepts connections. It
// returns the socket and the metrics address ("" unless metrics).
func startSnapshotter(ctx context.Context, dir, repoDir string, o Options) (*process, string, string, error) {
	bin, err := Binary("cvmfs-snapshotter")
	if err != nil {
		return nil, "", "", err
	}
	cfgPath, metrics, err := writeSnapshotterConfig(dir, repoDir, o)
	if err != nil {
		return nil, "", "", err
	}
	sock := filepath.Join(dir, "snapshotter.sock")
	p, err := startProcess("cvmfs-snapshotter", filepath.Join(dir, "snapshotter.log"), os.Environ(),
		bin, "--address", sock, "--root", filepath.Join(dir, "snapshotter"), "--config", cfgPath, "--log-level", "debug")
	if err != nil {
		return nil, "", "", err
	}
	if err := p.waitSocket(ctx, sock, 20*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, "", "", err
	}
	return p, sock, metrics, nil
}

// writeSnapshotterConfig writes the daemon's configuration file for o into
// dir and returns its path and the metrics address ("" unless o.Metrics).
func writeSnapshotterConfig(dir, repoDir string, o Options) (path, metrics string, err error) {
	path = filepath.Join(dir, "snapshotter.toml")
	if o.SnapshotterConfig != "" {
		text := strings.NewReplacer("$T", dir, "$REPO", repoDir).Replace(o.SnapshotterConfig)
		return path, "", os.WriteFile(path, []byte(text), 0o644)
	}
	cfg := config.Default()
	cfg.Repository = repoName
	cfg.AbsoluteMountpoint = repoDir
	cfg.LookupTimeout = config.Duration(5 * time.Second)
	if o.MountMode != "" {
		cfg.MountMode = o.MountMode
	}
	if o.Accounting != "" {
		cfg.Accounting = o.Accounting
	}
	if o.SeparateFUSEServer {
		cfg.FUSEServer = config.FUSESeparate
	}
	if o.NoPrefetch {
		cfg.Prefetch = false
	}
	if o.PrefetchPageCache {
		cfg.PrefetchPageCache = true
	}
	if o.PrefetchDirectories {
		cfg.PrefetchDirectories = true
	}
	if o.PrefetchConcurrency != 0 {
		cfg.PrefetchConcurrency = o.PrefetchConcurrency
	}
	if o.ProfileFlushInterval != "" {
		if err := cfg.ProfileFlushInterval.UnmarshalText([]byte(o.ProfileFlushInterval)); err != nil {
			return "", "", fmt.Errorf("profile-flush-interval: %w", err)
		}
	}
	if o.Metrics {
		if metrics, err = freeAddr(); err != nil {
			return "", "", err
		}
		// The scenarios read per-file profiles over TCP (cvmfsctl stats --layer).
		cfg.MetricsAddress = metrics
		cfg.ExposeProfile = true
	}
	var b strings.Builder
	if err := config.Encode(&b, cfg); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", "", err
	}
	return path, metrics, nil
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
