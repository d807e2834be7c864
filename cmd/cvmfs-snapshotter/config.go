package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
)

// Mount modes, and where FUSE mounts are served.
const (
	modeFUSE = "fuse"
	modeBind = "bind"

	fuseInProcess = "in-process"
	fuseSeparate  = "separate"
)

// duration is a time.Duration written as a Go duration string in TOML.
type duration time.Duration

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	*d = duration(v)
	return nil
}

func (d duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// config is the daemon's TOML configuration. The first two keys are those
// of the cvmfs_snapshotter this daemon replaces.
type config struct {
	// Repository is the CVMFS repository holding the layers.
	Repository string `toml:"repository"`
	// AbsoluteMountpoint is where the repository is mounted; default
	// /cvmfs/<repository>.
	AbsoluteMountpoint string `toml:"absolute-mountpoint"`
	// MountMode is "fuse" (default) or "bind".
	MountMode string `toml:"mount-mode"`
	// LookupTimeout bounds a layer lookup and mount at Prepare.
	LookupTimeout duration `toml:"lookup-timeout"`
	// Accounting is the FUSE accounting mode: "open" (default) or "bytes".
	Accounting string `toml:"accounting"`
	// EntryTimeout, AttrTimeout and NegativeTimeout are the kernel's FUSE
	// cache timeouts; layers are immutable, so they can be long.
	EntryTimeout    duration `toml:"entry-timeout"`
	AttrTimeout     duration `toml:"attr-timeout"`
	NegativeTimeout duration `toml:"negative-timeout"`
	// AttrCacheSize bounds the shared attribute cache, in entries.
	AttrCacheSize int `toml:"attr-cache-size"`
	// ProfileLimit bounds the per-file access profile of each layer.
	ProfileLimit int `toml:"profile-limit"`
	// FUSEServer is "in-process" (default: the daemon serves its FUSE
	// mounts and unmounts them when it stops) or "separate" (a detached
	// cvmfs-snapshotter fuse-server process serves them and outlives daemon
	// restarts, so running containers keep their layers).
	FUSEServer string `toml:"fuse-server"`
	// FUSEServerSocket is the separate server's socket; default
	// <root>/fuse-server.sock.
	FUSEServerSocket string `toml:"fuse-server-socket"`
	// MetricsAddress serves /metrics and /stats over HTTP; "" disables it.
	// host:port (loopback recommended) or unix:///path.
	MetricsAddress string `toml:"metrics-address"`
}

func defaultConfig() config {
	return config{
		Repository:      ducc.DefaultRepository,
		MountMode:       modeFUSE,
		LookupTimeout:   duration(10 * time.Second),
		Accounting:      "open",
		EntryTimeout:    duration(time.Hour),
		AttrTimeout:     duration(time.Hour),
		NegativeTimeout: duration(time.Hour),
		AttrCacheSize:   100000,
		ProfileLimit:    10000,
		FUSEServer:      fuseInProcess,
	}
}

// loadConfig reads path (if not empty) over the defaults. Unknown keys are
// an error, so that a typo does not silently fall back to a default.
func loadConfig(path string) (config, error) {
	cfg := defaultConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return config{}, fmt.Errorf("read config: %w", err)
		}
		if err := parseConfig(b, &cfg); err != nil {
			return config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if cfg.AbsoluteMountpoint == "" {
		cfg.AbsoluteMountpoint = ducc.DefaultMountpoint(cfg.Repository)
	}
	return cfg, cfg.validate()
}

func parseConfig(b []byte, cfg *config) error {
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

func (c config) validate() error {
	switch c.MountMode {
	case modeFUSE, modeBind:
	default:
		return fmt.Errorf("mount-mode %q: want %q or %q: %w", c.MountMode, modeFUSE, modeBind, errdefs.ErrInvalidArgument)
	}
	switch c.Accounting {
	case "open", "bytes":
	default:
		return fmt.Errorf("accounting %q: want \"open\" or \"bytes\": %w", c.Accounting, errdefs.ErrInvalidArgument)
	}
	switch c.FUSEServer {
	case fuseInProcess, fuseSeparate:
	default:
		return fmt.Errorf("fuse-server %q: want %q or %q: %w", c.FUSEServer, fuseInProcess, fuseSeparate, errdefs.ErrInvalidArgument)
	}
	if c.Repository == "" {
		return fmt.Errorf("repository is empty: %w", errdefs.ErrInvalidArgument)
	}
	if c.AttrCacheSize <= 0 || c.ProfileLimit < 0 {
		return fmt.Errorf("attr-cache-size must be positive and profile-limit not negative: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
