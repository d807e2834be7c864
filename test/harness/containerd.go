package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
)

// Containerd selects which containerd the environment runs.
type Containerd int

const (
	// Containerd2 is containerd 2.x from $CVMFS_TEST_TOOLS/containerd2/bin.
	Containerd2 Containerd = iota
	// Containerd16 is Debian's containerd 1.6 at /usr/bin/containerd.
	Containerd16
)

// String returns "containerd 2" or "containerd 1.6".
func (c Containerd) String() string {
	if c == Containerd16 {
		return "containerd 1.6"
	}
	return "containerd 2"
}

// SnapshotterName is the proxy plugin name containerd knows our daemon by.
const SnapshotterName = "cvmfs-snapshotter"

// containerd2Bin returns the directory of the containerd 2.x binaries.
func containerd2Bin() (string, error) {
	tools := os.Getenv("CVMFS_TEST_TOOLS")
	if tools == "" {
		// go test from a checkout: make deps' default place.
		root, err := moduleRoot()
		if err != nil {
			return "", fmt.Errorf("CVMFS_TEST_TOOLS is not set (make deps installs containerd 2 there): %w", err)
		}
		tools = filepath.Join(root, "_build", "tools")
	}
	bin, err := filepath.Abs(filepath.Join(tools, "containerd2", "bin"))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(bin, "containerd")); err != nil {
		return "", fmt.Errorf("containerd 2 not installed in %s (run make deps): %w", bin, err)
	}
	return bin, nil
}

// moduleRoot returns the nearest directory at or above the working
// directory that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Containerd2Tool returns the path of one of containerd 2's binaries
// ("ctr", "containerd-shim-runc-v2").
func Containerd2Tool(name string) (string, error) {
	bin, err := containerd2Bin()
	if err != nil {
		return "", err
	}
	return filepath.Join(bin, name), nil
}

// Containerd2Available reports why containerd 2 cannot run, or nil.
func Containerd2Available() error {
	_, err := containerd2Bin()
	return err
}

// Containerd16Available reports why containerd 1.6 cannot run, or nil.
func Containerd16Available() error {
	_, err := os.Stat("/usr/bin/containerd")
	return err
}

// ContainerdLocalConfig returns the parts of a containerd configuration of
// flavour c that keep it inside an environment's directory, with the
// placeholders of Options.ContainerdConfig: top-level keys (root, state,
// the plugins turned off), which must come before the first table, and
// tables (sockets, opt, and with cri the CNI and registry settings of the
// CRI plugin). A deployment snippet goes between the two.
func ContainerdLocalConfig(c Containerd, cri bool) (keys, tables string) {
	keys = `root = "$T/root"
state = "$T/state"
`
	tables = `[grpc]
  address = "$T/containerd.sock"
[ttrpc]
  address = "$T/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$T/opt"
`
	switch {
	case c == Containerd2 && !cri:
		keys += `disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
`
	case c == Containerd2:
		tables += `[plugins."io.containerd.cri.v1.images".registry]
  config_path = "$T/certs.d"
[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["$T/cni/bin"]
  conf_dir = "$T/cni/conf"
`
	case !cri:
		keys += `disabled_plugins = ["io.containerd.grpc.v1.cri"]
`
	default:
		tables += `[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "$T/cni/bin"
  conf_dir = "$T/cni/conf"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REG"]
  endpoint = ["http://$REG"]
`
	}
	return keys, tables
}

// containerdConfig renders the config of flavour c rooted at dir: tmpl if
// not empty (Options.ContainerdConfig), otherwise the generated one.
func containerdConfig(c Containerd, dir, snapshotterSock, registryHost string, cri bool, tmpl string) string {
	r := strings.NewReplacer("$T", dir, "$SNAP", snapshotterSock, "$REG", registryHost, "$NAME", SnapshotterName)
	if tmpl != "" {
		return r.Replace(tmpl)
	}
	keys, tables := ContainerdLocalConfig(c, cri)
	tables += `[proxy_plugins.$NAME]
  type = "snapshot"
  address = "$SNAP"
`
	if c == Containerd2 {
		criConfig := ""
		if cri {
			// disable_snapshot_annotations = false makes the CRI plugin
			// pull locally (not through the transfer service).
			criConfig = `[plugins."io.containerd.cri.v1.images"]
  snapshotter = "$NAME"
  disable_snapshot_annotations = false
`
		}
		return r.Replace("version = 3\n" + keys + tables + criConfig + `[proxy_plugins.$NAME.exports]
  enable_remote_snapshot_annotations = "true"
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = "linux/amd64"
  snapshotter = "overlayfs"
  differ = "walking"
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = "linux/amd64"
  snapshotter = "$NAME"
  differ = "walking"
`)
	}
	if !cri {
		return r.Replace("version = 2\n" + keys + tables)
	}
	return r.Replace("version = 2\n" + keys + tables + `[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "$NAME"
  disable_snapshot_annotations = false
`)
}

// startContainerd writes the config and starts containerd of flavour c in
// dir, waiting until its API answers.
func startContainerd(ctx context.Context, c Containerd, dir, snapshotterSock, registryHost string, cri bool, tmpl string) (*process, string, error) {
	bin := "/usr/bin/containerd"
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	if c == Containerd2 {
		b, err := containerd2Bin()
		if err != nil {
			return nil, "", err
		}
		// The v2 shim must come first on PATH: containerd finds it there.
		bin, path = filepath.Join(b, "containerd"), b+":"+path
	}
	if cri && c == Containerd2 {
		// containerd 2 reads registry hosts from config_path only.
		hosts := filepath.Join(dir, "certs.d", registryHost)
		if err := os.MkdirAll(hosts, 0o755); err != nil {
			return nil, "", err
		}
		toml := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", registryHost, registryHost)
		if err := os.WriteFile(filepath.Join(hosts, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return nil, "", err
		}
	}
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(containerdConfig(c, dir, snapshotterSock, registryHost, cri, tmpl)), 0o644); err != nil {
		return nil, "", err
	}
	env := append(filteredEnv("PATH"), "PATH="+path)
	p, err := startProcess(c.String(), filepath.Join(dir, "containerd.log"), env, bin, "--config", cfgPath, "--log-level", "debug")
	if err != nil {
		return nil, "", err
	}
	sock := filepath.Join(dir, "containerd.sock")
	if err := p.waitSocket(ctx, sock, 20*time.Second); err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	// The socket accepts before every plugin is loaded: wait for the API.
	client, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		p.stop(5 * time.Second)
		return nil, "", err
	}
	defer client.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err = client.Version(ctx); err == nil {
			return p, sock, nil
		}
		if time.Now().After(deadline) || p.exited() {
			p.stop(5 * time.Second)
			return nil, "", fmt.Errorf("%s does not answer: %w (see %s)", c, err, p.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// filteredEnv returns the environment without the named variables.
func filteredEnv(drop ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}
