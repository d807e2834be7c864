package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

const (
	manifestFile        = "kubernetes/daemonset.yaml"
	containerConfigFile = "kubernetes/config.toml"
)

// manifest holds the objects of daemonset.yaml.
type manifest struct {
	namespaces []corev1.Namespace
	configMaps []corev1.ConfigMap
	daemonSets []appsv1.DaemonSet
}

// decodeManifest decodes every document of path strictly into its
// Kubernetes type: an unknown or misplaced field, a duplicate key or an
// unexpected kind is an error.
func decodeManifest(path string) (manifest, error) {
	var m manifest
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return m, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return m, fmt.Errorf("document %d: %w", i, err)
		}
		var target any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			m.namespaces = append(m.namespaces, corev1.Namespace{})
			target = &m.namespaces[len(m.namespaces)-1]
		case "v1 ConfigMap":
			m.configMaps = append(m.configMaps, corev1.ConfigMap{})
			target = &m.configMaps[len(m.configMaps)-1]
		case "apps/v1 DaemonSet":
			m.daemonSets = append(m.daemonSets, appsv1.DaemonSet{})
			target = &m.daemonSets[len(m.daemonSets)-1]
		default:
			return m, fmt.Errorf("document %d: unexpected %s %s", i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, target); err != nil {
			return m, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
	}
}

// TestManifestStrictDecoding proves the decoding catches what it must: a
// misspelt field fails.
func TestManifestStrictDecoding(t *testing.T) {
	text, err := os.ReadFile(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(text), "mountPropagation: Bidirectional", "mountPropogation: Bidirectional", 1)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := decodeManifest(path); err == nil || !strings.Contains(err.Error(), "mountPropogation") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
}

// TestManifest checks the DaemonSet against the daemon's own defaults:
// privileged; the repository's parent with HostToContainer propagation;
// the socket directory of the default --address; the default --root with
// Bidirectional propagation; /dev/fuse; the ConfigMap's config.toml, the
// same text as the image's, where --config reads it; a liveness probe on
// the admin socket.
func TestManifest(t *testing.T) {
	m, err := decodeManifest(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.namespaces) != 1 || len(m.configMaps) != 1 || len(m.daemonSets) != 1 {
		t.Fatalf("%d namespaces, %d config maps, %d daemon sets; want one each", len(m.namespaces), len(m.configMaps), len(m.daemonSets))
	}
	defaults, err := harness.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	ns, cm, ds := m.namespaces[0], m.configMaps[0], m.daemonSets[0]
	if cm.Namespace != ns.Name || ds.Namespace != ns.Name {
		t.Errorf("namespaces: config map %q, daemon set %q; want %q", cm.Namespace, ds.Namespace, ns.Name)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the selector's %s=%s does not select the pod template (labels %v)", k, v, ds.Spec.Template.Labels)
		}
	}
	pod := ds.Spec.Template.Spec
	containers := map[string]corev1.Container{}
	for _, c := range pod.Containers {
		containers[c.Name] = c
	}
	c, ok := containers["cvmfs-snapshotter"]
	if len(pod.Containers) != 2 || !ok {
		t.Fatalf("containers %v, want the daemon (cvmfs-snapshotter) and its custody", slices.Collect(maps.Keys(containers)))
	}
	checkCustodyContainer(t, containers["custody"], defaults.Root, c.Image)
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("container is not privileged")
	}
	if len(c.Command) != 0 {
		t.Errorf("command %v overrides the image's entrypoint (the daemon)", c.Command)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	// mount returns the volume mounted at path and its mount.
	mount := func(path string) (corev1.VolumeMount, corev1.Volume) {
		for _, vm := range c.VolumeMounts {
			if vm.MountPath == path {
				return vm, volumes[vm.Name]
			}
		}
		t.Errorf("nothing is mounted at %s", path)
		return corev1.VolumeMount{}, corev1.Volume{}
	}
	none := corev1.MountPropagationNone
	for _, tc := range []struct {
		what        string
		path        string
		hostType    corev1.HostPathType
		propagation corev1.MountPropagationMode
	}{
		{"the repository's parent", filepath.Dir(ducc.DefaultMountpoint(ducc.DefaultRepository)), corev1.HostPathDirectory, corev1.MountPropagationHostToContainer},
		{"the socket directory", filepath.Dir(defaults.Address), corev1.HostPathDirectoryOrCreate, none},
		{"the state directory", defaults.Root, corev1.HostPathDirectoryOrCreate, corev1.MountPropagationBidirectional},
		{"the FUSE device", "/dev/fuse", corev1.HostPathCharDev, none},
	} {
		vm, v := mount(tc.path)
		if v.HostPath == nil || v.HostPath.Path != tc.path || v.HostPath.Type == nil || *v.HostPath.Type != tc.hostType {
			t.Errorf("%s: volume %q is %+v, want hostPath %s of type %s", tc.what, vm.Name, v.VolumeSource, tc.path, tc.hostType)
		}
		got := none
		if vm.MountPropagation != nil {
			got = *vm.MountPropagation
		}
		if got != tc.propagation {
			t.Errorf("%s: mountPropagation %s, want %s", tc.what, got, tc.propagation)
		}
	}

	// The daemon reads the ConfigMap's config.toml.
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %v: no --config", c.Args)
	}
	configPath := c.Args[i+1]
	_, v := mount(filepath.Dir(configPath))
	if v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
		t.Errorf("%s is not the config map %s: %+v", filepath.Dir(configPath), cm.Name, v.VolumeSource)
	}
	want, err := os.ReadFile(containerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := cm.Data[filepath.Base(configPath)]; got != string(want) {
		t.Errorf("config map %s differs from %s:\n%s", filepath.Base(configPath), containerConfigFile, got)
	}
	if !strings.Contains(string(want), fmt.Sprintf("absolute-mountpoint = %q", ducc.DefaultMountpoint(ducc.DefaultRepository))) {
		t.Errorf("%s does not name the repository under the mounted %s", containerConfigFile, filepath.Dir(ducc.DefaultMountpoint(ducc.DefaultRepository)))
	}

	// Liveness: cvmfsctl stats on the admin socket, <root>/admin.sock.
	p := c.LivenessProbe
	if p == nil || p.Exec == nil {
		t.Fatalf("no exec liveness probe: %+v", p)
	}
	wantProbe := []string{"/usr/local/bin/cvmfsctl", "stats", "--address", "unix://" + filepath.Join(defaults.Root, "admin.sock")}
	if !slices.Equal(p.Exec.Command, wantProbe) {
		t.Errorf("liveness probe %v, want %v", p.Exec.Command, wantProbe)
	}
}

// checkCustodyContainer checks the custody container: the image's custody
// subcommand on <root>/custody.sock, where the daemon looks for it,
// without --exit-when-idle (a container that exits is restarted), with the
// state directory shared Bidirectional and the privilege to unmount.
func checkCustodyContainer(t *testing.T, c corev1.Container, root, image string) {
	t.Helper()
	want := []string{"custody", "--socket", filepath.Join(root, "custody.sock")}
	if !slices.Equal(c.Args, want) || len(c.Command) != 0 || c.Image != image {
		t.Errorf("custody container: image %q command %v args %v; want the daemon's image %q with args %v", c.Image, c.Command, c.Args, image, want)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("custody container is not privileged")
	}
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == root {
			if vm.MountPropagation == nil || *vm.MountPropagation != corev1.MountPropagationBidirectional {
				t.Errorf("custody container: %s is not Bidirectional", root)
			}
			return
		}
	}
	t.Errorf("custody container: the state directory %s is not mounted", root)
}
