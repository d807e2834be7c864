package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
)

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		toml    string
		check   func(config) bool
		wantErr bool
	}{
		{"defaults", "", func(c config) bool {
			return c.Repository == "unpacked.cern.ch" && c.AbsoluteMountpoint == "/cvmfs/unpacked.cern.ch" &&
				c.MountMode == modeFUSE && time.Duration(c.LookupTimeout) == 10*time.Second && c.MetricsAddress == "" &&
				c.FUSEServer == fuseInProcess && c.VerifyChain
		}, false},
		{"repository sets the mountpoint", `repository = "sft.cern.ch"`, func(c config) bool {
			return c.AbsoluteMountpoint == "/cvmfs/sft.cern.ch"
		}, false},
		{"every key", `
repository = "unpacked.cern.ch"
absolute-mountpoint = "/srv/layers"
mount-mode = "bind"
lookup-timeout = "3s"
accounting = "bytes"
entry-timeout = "1m"
attr-timeout = "2m"
negative-timeout = "5s"
attr-cache-size = 10
profile-limit = 0
metrics-address = "127.0.0.1:9783"
fuse-server = "separate"
fuse-server-socket = "/run/cvmfs-fuse.sock"
admin-socket = "/run/cvmfs-admin.sock"
expose-profile = true
overlay-userxattr = "off"
verify-chain = false
`, func(c config) bool {
			return c.AbsoluteMountpoint == "/srv/layers" && c.MountMode == modeBind && time.Duration(c.LookupTimeout) == 3*time.Second &&
				c.Accounting == "bytes" && time.Duration(c.AttrTimeout) == 2*time.Minute && c.AttrCacheSize == 10 && c.MetricsAddress == "127.0.0.1:9783" &&
				c.FUSEServer == fuseSeparate && c.FUSEServerSocket == "/run/cvmfs-fuse.sock" && c.ProfileLimit == 0 &&
				c.AdminSocket == "/run/cvmfs-admin.sock" && c.ExposeProfile && c.OverlayUserxattr == "off" && !c.VerifyChain
		}, false},
		{"zero kernel cache timeouts turn the caches off", `entry-timeout = "0s"` + "\n" + `attr-timeout = "0s"` + "\n" + `negative-timeout = "0s"`, func(c config) bool {
			return c.EntryTimeout == 0 && c.AttrTimeout == 0 && c.NegativeTimeout == 0
		}, false},
		{"unix metrics address", `metrics-address = "unix:///run/m.sock"`, func(c config) bool { return c.MetricsAddress == "unix:///run/m.sock" }, false},
		{"bad fuse-server", `fuse-server = "remote"`, nil, true},
		{"unknown key", `repositry = "x"`, nil, true},
		{"bad mode", `mount-mode = "nfs"`, nil, true},
		{"bad accounting", `accounting = "all"`, nil, true},
		{"bad duration", `lookup-timeout = "soon"`, nil, true},
		{"negative duration", `lookup-timeout = "-1s"`, nil, true},
		{"wrong type", `attr-cache-size = "many"`, nil, true},
		{"zero cache", `attr-cache-size = 0`, nil, true},
		{"empty repository", `repository = ""`, nil, true},
		{"not toml", `[[[`, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.toml != "" {
				path = filepath.Join(t.TempDir(), "config.toml")
				if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := loadConfig(path)
			if tc.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("loadConfig = %+v, %v; want ErrInvalidArgument", cfg, err)
				}
				return
			}
			if err != nil || !tc.check(cfg) {
				t.Fatalf("loadConfig = %+v, %v", cfg, err)
			}
			// A configuration that loads is one the daemon starts with.
			m, err := newManager(cfg, ducc.New(cfg.AbsoluteMountpoint), nil)
			if err != nil {
				t.Fatalf("loadConfig accepted %+v but the FUSE manager refuses it: %v", cfg, err)
			}
			m.Close(context.Background())
		})
	}
}

// TestConfigBadValues: every bad value is refused at load, with
// ErrInvalidArgument and a message naming what is wrong, rather than
// silently replaced or left for the daemon to trip over.
func TestConfigBadValues(t *testing.T) {
	for _, tc := range []struct{ toml, want string }{
		{`lookup-timeout = "0s"`, "lookup timeout 0s is not positive"},
		{`lookup-timeout = "-1s"`, "negative duration"},
		{`entry-timeout = "-5m"`, "negative duration"},
		{`attr-timeout = "-1ns"`, "negative duration"},
		{`negative-timeout = "-1h"`, "negative duration"},
		{`attr-cache-size = 0`, "cache size must be at least 1"},
		{`attr-cache-size = -1`, "cache size must be at least 1"},
		{`profile-limit = -1`, "profile limit -1 is negative"},
		{`accounting = "all"`, "accounting mode \"all\""},
		{`accounting = 1`, "accounting"},
		{`mount-mode = "nfs"`, "mount-mode"},
		{`fuse-server = "remote"`, "fuse-server"},
		{`overlay-userxattr = "yes"`, "overlay-userxattr: userxattr mode \"yes\""},
		{`metrics-address = "9783"`, "metrics-address"},
		{`metrics-address = "unix://relative.sock"`, "metrics-address"},
		{`admin-socket = "admin.sock"`, "admin-socket"},
		{`expose-profile = "yes"`, "expose-profile"},
		{`verify-chain = "no"`, "verify-chain"},
		{`repository = ""`, "repository is empty"},
		{`repository = "../etc"`, "repository"},
		{`repository = "a/b"`, "repository"},
		{`absolute-mountpoint = "cvmfs/unpacked"`, "absolute-mountpoint"},
		{`metrics-address = "unix:///"`, "metrics-address"},
		{`metrics-address = "unix:///run/"`, "metrics-address"},
		{`metrics-address = "unix:///` + strings.Repeat("d", 120) + `.sock"`, "metrics-address"},
		{`metrics-address = "127.0.0.1:99999"`, "metrics-address"},
		{`metrics-address = "127.0.0.1:-1"`, "metrics-address"},
		{`metrics-address = "127.0.0.1:"`, "metrics-address"},
		{`metrics-address = "127.0.0.1:nosuchservice"`, "metrics-address"},
		{`metrics-address = "bad host:9783"`, "metrics-address"},
		{`admin-socket = "/"`, "admin-socket"},
		{`fuse-server-socket = "/run/` + strings.Repeat("d", 120) + `.sock"`, "fuse-server-socket"},
	} {
		t.Run(tc.toml, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadConfig(path)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig = %+v, %v; want ErrInvalidArgument mentioning %q", cfg, err, tc.want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := loadConfig(filepath.Join(t.TempDir(), "absent.toml")); err == nil {
		t.Fatal("a missing config file must be an error")
	}
}

// FuzzParseConfig: no TOML input panics the parser or the validation.
func FuzzParseConfig(f *testing.F) {
	f.Add(`repository = "unpacked.cern.ch"`)
	f.Add(`mount-mode = "bind"` + "\n" + `lookup-timeout = "1s"`)
	f.Add(`attr-cache-size = -1`)
	f.Fuzz(func(t *testing.T, s string) {
		cfg := defaultConfig()
		if err := parseConfig([]byte(s), &cfg); err != nil {
			return
		}
		_ = cfg.validate()
	})
}

func TestFlags(t *testing.T) {
	var out strings.Builder
	f, err := parseFlags([]string{"--address", "/tmp/s.sock", "--root=/tmp/r", "--log-level", "debug", "--config", "c.toml"}, &out)
	if err != nil || f.address != "/tmp/s.sock" || f.root != "/tmp/r" || f.logLevel != "debug" || f.config != "c.toml" {
		t.Fatalf("parseFlags = %+v, %v", f, err)
	}
	f, err = parseFlags(nil, &out)
	if err != nil || f.address != defaultAddress || f.root != defaultRoot {
		t.Fatalf("defaults = %+v, %v", f, err)
	}
	out.Reset()
	if _, err := parseFlags([]string{"--help"}, &out); err == nil {
		t.Fatal("--help must stop")
	}
	for _, flag := range []string{"--address", "--config", "--log-level", "--root", "--version"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help does not show %s:\n%s", flag, out.String())
		}
	}
	if _, err := parseFlags([]string{"extra"}, &out); err == nil {
		t.Fatal("stray arguments must be an error")
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9783": true, "[::1]:9783": true, "localhost:1": true,
		"0.0.0.0:9783": false, ":9783": false, "10.0.0.1:80": false, "garbage": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
