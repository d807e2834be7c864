package deploy

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage builds the daemon's image with deploy/image and checks it: the
// daemon as entrypoint, static binaries of the daemon and cvmfsctl (the
// liveness probe's), the container config where the DaemonSet's --config
// reads it, and a daemon that runs.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the static binaries: skipped in -short mode")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "image.tar")
	cmd := exec.Command("go", "run", "./image", "-o", out, "-config", containerConfigFile, "-version", "test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./image: %v\n%s", err, b)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeManifest(manifestFile)
	if err != nil {
		t.Fatal(err)
	}
	c := m.daemonSets[0].Spec.Template.Spec.Containers[0]
	if want := []string{"/usr/local/bin/cvmfs-snapshotter"}; !slices.Equal(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %v, want %v", cf.Config.Entrypoint, want)
	}
	if !slices.Equal(cf.Config.Cmd, c.Args) {
		t.Errorf("cmd %v differs from the DaemonSet's args %v", cf.Config.Cmd, c.Args)
	}
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}

	files := imageFiles(t, img)
	config, err := os.ReadFile(containerConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := files[c.Args[slices.Index(c.Args, "--config")+1]]; !bytes.Equal(got, config) {
		t.Errorf("the image's config differs from %s:\n%s", containerConfigFile, got)
	}
	for _, bin := range []string{cf.Config.Entrypoint[0], c.LivenessProbe.Exec.Command[0]} {
		data, ok := files[bin]
		if !ok {
			t.Errorf("%s is not in the image", bin)
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: %v", bin, err)
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("%s is dynamically linked (%s)", bin, p.Type)
			}
		}
	}
	daemon := filepath.Join(dir, "cvmfs-snapshotter")
	if err := os.WriteFile(daemon, files[cf.Config.Entrypoint[0]], 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(daemon, "--version").CombinedOutput(); err != nil || strings.TrimSpace(string(b)) != "cvmfs-snapshotter test" {
		t.Errorf("the image's daemon --version: %v: %q", err, b)
	}
}

// imageFiles returns the regular files of the layers, by absolute path.
func imageFiles(t *testing.T, img v1.Image) map[string][]byte {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Typeflag != tar.TypeReg {
				continue
			}
			if h.Mode&0o111 == 0 && strings.HasPrefix(h.Name, "usr/local/bin/") {
				t.Errorf("%s is not executable (mode %o)", h.Name, h.Mode)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files["/"+strings.TrimPrefix(h.Name, "/")] = data
		}
		rc.Close()
	}
	return files
}
