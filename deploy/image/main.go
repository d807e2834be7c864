// Command image builds the container image of cvmfs-snapshotter without a
// container engine: static binaries of the daemon and cvmfsctl (built with
// CGO_ENABLED=0) and the container configuration, in one layer, written as
// an image tarball (`ctr image import`, `docker load`) or pushed to a
// registry.
//
//	go run ./deploy/image -o _build/cvmfs-snapshotter-image.tar
//	go run ./deploy/image -push registry.example.org/cvmfs-snapshotter:v1
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Where the image puts things; the DaemonSet and its test rely on them.
const (
	binDir     = "/usr/local/bin"
	configPath = "/etc/containerd-cvmfs-grpc/config.toml"
	module     = "github.com/cvmfs-contrib/cvmfs-fuse-snapshotter"
)

// commands are the module's commands the image holds.
var commands = []string{"cvmfs-snapshotter", "cvmfsctl"}

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("o", "", "write the image as a tarball to this file")
	tag := fs.String("tag", "cvmfs-snapshotter:dev", "the image's name in the tarball")
	push := fs.String("push", "", "push the image to this reference (credentials from ~/.docker/config.json)")
	config := fs.String("config", "deploy/kubernetes/config.toml", "the daemon's configuration to put at "+configPath)
	arch := fs.String("arch", runtime.GOARCH, "GOARCH of the binaries and the image")
	version := fs.String("version", "dev", "the daemon's --version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" && *push == "" {
		return fmt.Errorf("give -o FILE, -push REF or both")
	}
	cfg, err := os.ReadFile(*config)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cvmfs-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := buildStatic(ctx, dir, *arch, *version); err != nil {
		return err
	}
	img, err := image(dir, cfg, *arch)
	if err != nil {
		return err
	}
	if *out != "" {
		ref, err := name.NewTag(*tag)
		if err != nil {
			return err
		}
		if err := tarball.WriteToFile(*out, ref, img); err != nil {
			return fmt.Errorf("failed to write %s: %w", *out, err)
		}
	}
	if *push != "" {
		ref, err := name.ParseReference(*push)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("failed to push %s: %w", ref, err)
		}
	}
	return nil
}

// buildStatic builds the commands into dir as static, stripped binaries.
func buildStatic(ctx context.Context, dir, arch, version string) error {
	argv := []string{"build", "-ldflags", "-s -w -X main.version=" + version, "-o", dir + "/"}
	for _, c := range commands {
		argv = append(argv, module+"/cmd/"+c)
	}
	cmd := exec.CommandContext(ctx, "go", argv...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("failed to build %v: %w", commands, err)
	}
	return nil
}

// image returns the image: one layer with the binaries of dir and the
// configuration, the daemon as entrypoint.
func image(dir string, config []byte, arch string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time: the same inputs give the same image.
	mtime := time.Unix(0, 0)
	for _, d := range []string{"etc/", "etc/containerd-cvmfs-grpc/", "usr/", "usr/local/", "usr/local/bin/", "tmp/"} {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: mode, ModTime: mtime}); err != nil {
			return nil, err
		}
	}
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, c := range commands {
		data, err := os.ReadFile(filepath.Join(dir, c))
		if err != nil {
			return nil, err
		}
		if err := add(binDir[1:]+"/"+c, 0o755, data); err != nil {
			return nil, err
		}
	}
	if err := add(configPath[1:], 0o644, config); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(buf.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: mtime}
	cf.Config.Entrypoint = []string{binDir + "/cvmfs-snapshotter"}
	cf.Config.Cmd = []string{"--config", configPath}
	cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	cf.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://" + module}
	return mutate.ConfigFile(img, cf)
}
