package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "repository = %q\nabsolute-mountpoint = %q\nlookup-timeout = \"5s\"\n", repoName, repoDir)
	if o.MountMode != "" {
		fmt.Fprintf(&cfg, "mount-mode = %q\n", o.MountMode)
	}
	if o.Accounting != "" {
		fmt.Fprintf(&cfg, "accounting = %q\n", o.Accounting)
	}
	if o.SeparateFUSEServer {
		fmt.Fprintf(&cfg, "fuse-server = \"separate\"\n")
	}
	if o.NoPrefetch {
		fmt.Fprintf(&cfg, "prefetch = false\n")
	}
	if o.PrefetchPageCache {
		fmt.Fprintf(&cfg, "prefetch-page-cache = true\n")
	}
	if o.PrefetchConcurrency != 0 {
		fmt.Fprintf(&cfg, "prefetch-concurrency = %d\n", o.PrefetchConcurrency)
	}
	if o.ProfileFlushInterval != "" {
		fmt.Fprintf(&cfg, "profile-flush-interval = %q\n", o.ProfileFlushInterval)
	}
	if o.Metrics {
		if metrics, err = freeAddr(); err != nil {
			return "", "", err
		}
		// The scenarios read per-file profiles over TCP (cvmfsctl stats --layer).
		fmt.Fprintf(&cfg, "metrics-address = %q\nexpose-profile = true\n", metrics)
	}
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
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
