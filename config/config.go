package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// Mount modes (mount-mode), and where FUSE mounts are served (fuse-server).
const (
	ModeFUSE = "fuse"
	ModeBind = "bind"

	FUSEInProcess = "in-process"
	FUSESeparate  = "separate"
)

// Duration is a time.Duration written as a Go duration string in TOML;
// negative durations are refused.
type Duration time.Duration

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Config is the daemon's TOML configuration. The first two keys are those
// of the cvmfs_snapshotter this daemon replaces. It only maps keys to the
// packages' options (options.go): defaults are the packages' own
// constants, and the packages' own option code validates the values (see
// Validate).
type Config struct {
	// Repository is the CVMFS repository holding the layers.
	Repository string `toml:"repository"`
	// AbsoluteMountpoint is where the repository is mounted; default
	// /cvmfs/<repository>.
	AbsoluteMountpoint string `toml:"absolute-mountpoint"`
	// MountMode is "fuse" (default) or "bind".
	MountMode string `toml:"mount-mode"`
	// LookupTimeout bounds a layer lookup and mount at Prepare; it must be
	// positive (snapshot.WithLookupTimeout).
	LookupTimeout Duration `toml:"lookup-timeout"`
	// Accounting is the FUSE accounting mode: "reads" (default), "open" or
	// "bytes" (usage.ParseAccounting).
	Accounting string `toml:"accounting"`
	// EntryTimeout, AttrTimeout and NegativeTimeout are the kernel's FUSE
	// cache timeouts; layers are immutable, so they can be long. 0 turns
	// that kernel cache off.
	EntryTimeout    Duration `toml:"entry-timeout"`
	AttrTimeout     Duration `toml:"attr-timeout"`
	NegativeTimeout Duration `toml:"negative-timeout"`
	// AttrCacheSize bounds the shared attribute cache, in entries (≥ 1).
	AttrCacheSize int `toml:"attr-cache-size"`
	// ProfileLimit bounds the per-file access profile of each layer; 0
	// turns the profile off.
	ProfileLimit int `toml:"profile-limit"`
	// ProfileFlushInterval is how often the usage records under
	// <root>/usage are written from the live accounting (they are also
	// written around every unmount and at shutdown); 0 writes them only
	// then (usagestore.WithFlushInterval).
	ProfileFlushInterval Duration `toml:"profile-flush-interval"`
	// FUSEServer is "in-process" (default: the daemon serves its FUSE
	// mounts, and its custody keeps them through restarts) or "separate"
	// (a detached cvmfs-snapshotter fuse-server process serves them and
	// outlives daemon restarts, not its own).
	FUSEServer string `toml:"fuse-server"`
	// FUSEServerSocket is the separate server's socket; default
	// <root>/fuse-server.sock.
	FUSEServerSocket string `toml:"fuse-server-socket"`
	// AdminSocket is the unix socket (0600) serving /metrics, /stats and
	// /stats/profile; default <root>/admin.sock. Always served.
	AdminSocket string `toml:"admin-socket"`
	// MetricsAddress also serves /metrics and /stats over HTTP; "" (the
	// default) disables it. host:port, or unix:///path (a 0600 socket,
	// which also serves /stats/profile).
	MetricsAddress string `toml:"metrics-address"`
	// ExposeProfile serves /stats/profile on a TCP metrics-address too.
	ExposeProfile bool `toml:"expose-profile"`
	// OverlayUserxattr is "auto" (default: userxattr when running in a
	// user namespace, as rootless containerd does), "on" or "off": whether
	// overlay mounts use the userxattr option (snapshot.ParseUserxattr).
	OverlayUserxattr string `toml:"overlay-userxattr"`
	// VerifyChain serves a layer, and restores a remote snapshot at start,
	// only under the chain ID its diff ID recorded in the repository
	// (DUCC's layers.json) makes; default on (snapshot.WithChainCheck).
	VerifyChain bool `toml:"verify-chain"`
	// Prefetch makes the first mount of a layer read, in the background,
	// the files workloads read of it before (this node's usage records,
	// then a profile published next to the layer in the repository), so
	// that the layer store has them local (fusefs.WithPrefetch).
	Prefetch bool `toml:"prefetch"`
	// PrefetchConcurrency bounds the prefetch reads in flight (≥ 1).
	PrefetchConcurrency int `toml:"prefetch-concurrency"`
	// PrefetchPageCache makes prefetch, under accounting "reads", read
	// through the layer's mount, so that the kernel's caches of the mount
	// hold the files; workloads' reads of them are then not counted
	// (fusefs.WithPrefetchPages).
	PrefetchPageCache bool `toml:"prefetch-page-cache"`
	// PrefetchDirectories makes prefetch also read, from the layer store,
	// the files that follow in its directory a file a workload read that
	// prefetch had not brought in (fusefs.WithDirectoryPrefetch).
	PrefetchDirectories bool `toml:"prefetch-directories"`
}

// Default returns the defaults: the packages' own where a package owns the
// value.
func Default() Config {
	return Config{
		Repository:           ducc.DefaultRepository,
		MountMode:            ModeFUSE,
		LookupTimeout:        Duration(snapshot.DefaultLookupTimeout),
		Accounting:           usage.DefaultAccounting.String(),
		EntryTimeout:         Duration(fusefs.DefaultTimeout),
		AttrTimeout:          Duration(fusefs.DefaultTimeout),
		NegativeTimeout:      Duration(fusefs.DefaultTimeout),
		AttrCacheSize:        cache.DefaultSize,
		ProfileLimit:         usage.DefaultProfileLimit,
		ProfileFlushInterval: Duration(usagestore.DefaultFlushInterval),
		FUSEServer:           FUSEInProcess,
		OverlayUserxattr:     snapshot.UserxattrAuto.String(),
		VerifyChain:          snapshot.DefaultChainCheck,
		Prefetch:             true,
		PrefetchConcurrency:  fusefs.DefaultPrefetchConcurrency,
	}
}

// Load reads path (if not empty) over the defaults and validates the
// result. Unknown keys are an error, so that a typo does not silently fall
// back to a default.
func Load(path string) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if err := Parse(b, &cfg); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if cfg.AbsoluteMountpoint == "" {
		cfg.AbsoluteMountpoint = ducc.DefaultMountpoint(cfg.Repository)
	}
	return cfg, cfg.Validate()
}

// Parse decodes the TOML b over cfg. Unknown keys are an error; every
// error wraps errdefs.ErrInvalidArgument.
func Parse(b []byte, cfg *Config) error {
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return fmt.Errorf("%s: %w", strict.String(), errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Validate checks the keys no package owns, then runs the packages' own
// checks through the very mapping the daemon uses (SnapshotOpts, FusefsOpts,
// PrefetchOpts), so that a configuration that loads is one the daemon
// starts with. Every error wraps errdefs.ErrInvalidArgument.
func (c Config) Validate() error {
	switch c.MountMode {
	case ModeFUSE, ModeBind:
	default:
		return fmt.Errorf("mount-mode %q: want %q or %q: %w", c.MountMode, ModeFUSE, ModeBind, errdefs.ErrInvalidArgument)
	}
	switch c.FUSEServer {
	case FUSEInProcess, FUSESeparate:
	default:
		return fmt.Errorf("fuse-server %q: want %q or %q: %w", c.FUSEServer, FUSEInProcess, FUSESeparate, errdefs.ErrInvalidArgument)
	}
	if c.Repository == "" {
		return fmt.Errorf("repository is empty: %w", errdefs.ErrInvalidArgument)
	}
	// It names a directory under /cvmfs: one path element.
	if c.Repository == "." || c.Repository == ".." || strings.ContainsAny(c.Repository, "/\x00") {
		return fmt.Errorf("repository %q: want a repository name such as %q: %w", c.Repository, ducc.DefaultRepository, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(c.AbsoluteMountpoint) {
		return fmt.Errorf("absolute-mountpoint %q is not an absolute path: %w", c.AbsoluteMountpoint, errdefs.ErrInvalidArgument)
	}
	for key, p := range map[string]string{"admin-socket": c.AdminSocket, "fuse-server-socket": c.FUSEServerSocket} {
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%s %q is not an absolute path: %w", key, p, errdefs.ErrInvalidArgument)
		}
		if err := unixsock.Check(p); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if err := validateMetricsAddress(c.MetricsAddress); err != nil {
		return err
	}
	sopts, err := c.SnapshotOpts()
	if err != nil {
		return err
	}
	if err := snapshot.ValidateOpts(sopts...); err != nil {
		return fmt.Errorf("lookup-timeout: %w", err)
	}
	m, err := c.manager()
	if err != nil {
		if !errdefs.IsInvalidArgument(err) {
			err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("FUSE settings: %w", err)
	}
	// Nothing is mounted yet: Close only marks it closed.
	return m.Close(context.Background())
}

// validateMetricsAddress accepts "", host:port (host empty, an IP address
// or a host name; port a number up to 65535 or a service name) and
// unix:///absolute/path (a path unixsock.Listen can bind).
func validateMetricsAddress(a string) error {
	if a == "" {
		return nil
	}
	if p, ok := strings.CutPrefix(a, "unix://"); ok {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("metrics-address %q: want unix:///absolute/path: %w", a, errdefs.ErrInvalidArgument)
		}
		if err := unixsock.Check(p); err != nil {
			return fmt.Errorf("metrics-address: %w", err)
		}
		return nil
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("metrics-address %q: want host:port or unix:///path: %v: %w", a, err, errdefs.ErrInvalidArgument)
	}
	if port == "" {
		return fmt.Errorf("metrics-address %q: no port: %w", a, errdefs.ErrInvalidArgument)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("metrics-address %q: port: %v: %w", a, err, errdefs.ErrInvalidArgument)
	}
	if host != "" && !validHost(host) {
		return fmt.Errorf("metrics-address %q: host %q is neither an IP address nor a host name: %w", a, host, errdefs.ErrInvalidArgument)
	}
	return nil
}

// validHost reports whether host is an IP address (an IPv6 one may have a
// zone) or a syntactically valid DNS name.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// Encode writes c as TOML, every key, in the form Parse reads.
func Encode(w io.Writer, c Config) error {
	return toml.NewEncoder(w).Encode(c)
}

// AdminSocketPath returns the admin socket's path: admin-socket, or
// <root>/admin.sock.
func (c Config) AdminSocketPath(root string) string {
	if c.AdminSocket != "" {
		return c.AdminSocket
	}
	return filepath.Join(root, "admin.sock")
}

// FUSEServerSocketPath returns fuse-server-socket, or
// <root>/fuse-server.sock, made absolute.
func (c Config) FUSEServerSocketPath(root string) string {
	sock := c.FUSEServerSocket
	if sock == "" {
		sock = filepath.Join(root, "fuse-server.sock")
	}
	if abs, err := filepath.Abs(sock); err == nil {
		sock = abs
	}
	return sock
}
