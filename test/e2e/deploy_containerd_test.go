package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// The shipped deployment files: containerd starts with each containerd
// snippet of deploy/containerd (its default socket path templated to the
// test's), the daemon with deploy/config.toml or the pod's
// deploy/kubernetes/config.toml (its repository path templated), and images pulled through the snippet's settings come from
// the repository, not the registry: through CRI (Kubernetes) on both
// containerd 1.6 and 2, and through the transfer service (ctr) on 2.
func TestDeploySnippets(t *testing.T) {
	for _, tc := range []struct {
		name       string
		containerd harness.Containerd
		snippet    string
		daemon     []string // the daemon's config, under deploy/
	}{
		{"containerd-1.6", harness.Containerd16, "config-v2.toml", []string{"config.toml"}},
		{"containerd-2", harness.Containerd2, "config-v3.toml", []string{"config.toml"}},
		{"containerd-2-pod-config", harness.Containerd2, "config-v3.toml", []string{"kubernetes", "config.toml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrdConfig, daemonConfig := deployConfigs(t, tc.containerd, tc.snippet, tc.daemon...)
			env := start(t, harness.Options{
				Containerd:         tc.containerd,
				CRI:                true,
				ContainerdConfig:   ctrdConfig,
				SnapshotterConfig:  daemonConfig,
				SeparateFUSEServer: strings.Contains(daemonConfig, `fuse-server = "separate"`),
			})
			ctx := testContext(t)
			ref, layers := pushApp(t, env)
			ingest(t, ctx, env, ref)
			env.Registry.Reset()

			criPull(t, ctx, env, ref)
			kctx := env.UseNamespace(ctx, "k8s.io")
			img, err := env.Client.GetImage(kctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			checkServed(t, env, layers)
			checkRemote(t, kctx, env, img, true, true, true)
			if tc.containerd != harness.Containerd2 {
				return
			}
			ns := harness.Unique("ctr")
			nctx := env.UseNamespace(ctx, ns)
			img = ctrPull(t, nctx, env, ns, ref)
			checkServed(t, env, layers)
			checkRemote(t, nctx, env, img, true, true, true)
			run(t, nctx, env, img, harness.RunOptions{}, "cat", "/app/file-003")
		})
	}
}

// deployConfigs renders the shipped files for an environment: containerd's
// config is the snippet, its socket path replaced by the environment's,
// between the keys and tables that keep containerd in the test directory;
// the daemon's is the file daemon (under deploy/) with the repository's
// path replaced.
func deployConfigs(t *testing.T, c harness.Containerd, snippet string, daemon ...string) (containerdConfig, daemonConfig string) {
	t.Helper()
	defaults, err := harness.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	text := readDeploy(t, "containerd", snippet)
	if !strings.Contains(text, defaults.Address) {
		t.Fatalf("%s does not name the daemon's default socket %s", snippet, defaults.Address)
	}
	keys, tables := harness.ContainerdLocalConfig(c, true)
	containerdConfig = keys + strings.ReplaceAll(text, defaults.Address, "$SNAP") + tables

	mountpoint := ducc.DefaultMountpoint(ducc.DefaultRepository)
	daemonConfig = readDeploy(t, daemon...)
	if !strings.Contains(daemonConfig, mountpoint) {
		t.Fatalf("deploy/%s does not name the default mountpoint %s", filepath.Join(daemon...), mountpoint)
	}
	return containerdConfig, strings.ReplaceAll(daemonConfig, mountpoint, "$REPO")
}

// readDeploy returns a file of the module's deploy directory.
func readDeploy(t *testing.T, elem ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "..", "deploy"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
