package config

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestLoadConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		toml    string
		check   func(Config) bool
		wantErr bool
	}{
		{"defaults", "", func(c Config) bool {
			return c.Repository == "unpacked.cern.ch" && c.AbsoluteMountpoint == "/cvmfs/unpacked.cern.ch" &&
				c.MountMode == ModeFUSE && time.Duration(c.LookupTimeout) == 10*time.Second && c.MetricsAddress == "" &&
				c.FUSEServer == FUSEInProcess && c.VerifyChain
		}, false},
		{"repository sets the mountpoint", `repository = "sft.cern.ch"`, func(c Config) bool {
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
`, func(c Config) bool {
			return c.AbsoluteMountpoint == "/srv/layers" && c.MountMode == ModeBind && time.Duration(c.LookupTimeout) == 3*time.Second &&
				c.Accounting == "bytes" && time.Duration(c.AttrTimeout) == 2*time.Minute && c.AttrCacheSize == 10 && c.MetricsAddress == "127.0.0.1:9783" &&
				c.FUSEServer == FUSESeparate && c.FUSEServerSocket == "/run/cvmfs-fuse.sock" && c.ProfileLimit == 0 &&
				c.AdminSocket == "/run/cvmfs-admin.sock" && c.ExposeProfile && c.OverlayUserxattr == "off" && !c.VerifyChain
		}, false},
		{"zero kernel cache timeouts turn the caches off", `entry-timeout = "0s"` + "\n" + `attr-timeout = "0s"` + "\n" + `negative-timeout = "0s"`, func(c Config) bool {
			return c.EntryTimeout == 0 && c.AttrTimeout == 0 && c.NegativeTimeout == 0
		}, false},
		{"unix metrics address", `metrics-address = "unix:///run/m.sock"`, func(c Config) bool { return c.MetricsAddress == "unix:///run/m.sock" }, false},
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
			cfg, err := Load(path)
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
			m, err := cfg.manager()
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
			cfg, err := Load(path)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("loadConfig = %+v, %v; want ErrInvalidArgument mentioning %q", cfg, err, tc.want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "absent.toml")); err == nil {
		t.Fatal("a missing config file must be an error")
	}
}

// FuzzParseConfig: no TOML input panics the parser or the validation.
func FuzzParseConfig(f *testing.F) {
	f.Add(`repository = "unpacked.cern.ch"`)
	f.Add(`mount-mode = "bind"` + "\n" + `lookup-timeout = "1s"`)
	f.Add(`attr-cache-size = -1`)
	f.Fuzz(func(t *testing.T, s string) {
		cfg := Default()
		if err := Parse([]byte(s), &cfg); err != nil {
			return
		}
		_ = cfg.Validate()
	})
}

// TestEncode: what Encode writes, Load reads back as it was, defaults and
// every key set alike.
func TestEncode(t *testing.T) {
	set := Default()
	set.AbsoluteMountpoint = "/srv/layers"
	set.MountMode = ModeBind
	set.LookupTimeout = Duration(3 * time.Second)
	set.EntryTimeout = 0
	set.ProfileLimit = 0
	set.FUSEServer = FUSESeparate
	set.MetricsAddress = "127.0.0.1:9783"
	set.ExposeProfile = true
	set.Prefetch = false
	def, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Config{def, set} {
		var b strings.Builder
		if err := Encode(&b, want); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Load(path)
		if err != nil || got != want {
			t.Errorf("Load(Encode(%+v)) = %+v, %v\n%s", want, got, err, b.String())
		}
	}
}
