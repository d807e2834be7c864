package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

const (
	unitFile = "cvmfs-snapshotter.service"
	// installedBinary is where the unit and the README install the daemon.
	installedBinary = "/usr/local/bin/cvmfs-snapshotter"
	// installedConfig is where the unit reads config.toml from.
	installedConfig = "/etc/containerd-cvmfs-grpc/config.toml"
)

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads a unit file (no line continuations, which ours avoids).
func parseUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// words returns every space-separated word of key's values in section.
func (u unit) words(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// TestUnitOrderingAndKill checks what the unit promises: after autofs and
// remote file systems, before containerd; only the daemon killed on stop,
// so a separate FUSE server lives on; nothing that removes state or hides
// the daemon's mounts in a namespace of its own.
func TestUnitOrderingAndKill(t *testing.T) {
	u := parseUnit(t, unitFile)
	for _, tc := range []struct{ section, key, want string }{
		{"Unit", "After", "autofs.service"},
		{"Unit", "After", "remote-fs.target"},
		{"Unit", "Before", "containerd.service"},
		{"Service", "KillMode", "process"},
		{"Service", "Restart", "always"},
		{"Install", "WantedBy", "multi-user.target"},
	} {
		if !slices.Contains(u.words(tc.section, tc.key), tc.want) {
			t.Errorf("[%s] %s = %v, want it to hold %s", tc.section, tc.key, u[tc.section][tc.key], tc.want)
		}
	}
	// Each of these either deletes state on a stop or start, or gives the
	// service a mount namespace of its own, where containerd would not
	// see the layers it mounts.
	for _, key := range []string{
		"ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "RuntimeDirectory", "StateDirectory",
		"CacheDirectory", "PrivateTmp", "PrivateMounts", "PrivateDevices", "ProtectSystem", "ProtectHome",
		"MountFlags", "ReadOnlyPaths", "ReadWritePaths", "InaccessiblePaths", "TemporaryFileSystem",
		"BindPaths", "BindReadOnlyPaths", "RootDirectory", "RootImage", "MountAPIVFS", "ProtectKernelModules",
	} {
		if v, ok := u["Service"][key]; ok {
			t.Errorf("[Service] %s = %v: it must not be set", key, v)
		}
	}
}

// TestUnitExecStart runs the unit's ExecStart command line (with
// --version, which parses every flag first) on the built daemon, and
// checks it reads the shipped config's install path.
func TestUnitExecStart(t *testing.T) {
	u := parseUnit(t, unitFile)
	argv := u.words("Service", "ExecStart")
	if len(argv) == 0 || argv[0] != installedBinary {
		t.Fatalf("ExecStart = %v, want %s first", argv, installedBinary)
	}
	if i := slices.Index(argv, "--config"); i < 0 || i+1 >= len(argv) || argv[i+1] != installedConfig {
		t.Errorf("ExecStart = %v, want --config %s", argv, installedConfig)
	}
	bin, err := harness.Binary("cvmfs-snapshotter")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, append(argv[1:], "--version")...).CombinedOutput()
	if err != nil {
		t.Errorf("the daemon refuses the unit's flags %v: %v\n%s", argv[1:], err, out)
	}
}

// TestUnitVerify has systemd-analyze check the unit (unknown keys, bad
// values, a missing binary): it must say nothing.
func TestUnitVerify(t *testing.T) {
	analyze := testutil.RequiresBinary(t, "systemd-analyze")
	bin, err := harness.Binary("cvmfs-snapshotter")
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart exists: point it at the built daemon.
	path := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(text), installedBinary, bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
