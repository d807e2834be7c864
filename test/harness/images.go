package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// ProbePath is where the probe binary sits in every test image.
const ProbePath = "/bin/probe"

// Image builds an image from compressed layer blobs (testutil.Image),
// whose default command runs the probe.
func Image(layers ...[]byte) (v1.Image, error) {
	return testutil.ImageRunning([]string{ProbePath, "echo", "hello from the image"}, []string{"PATH=/bin"}, layers...)
}

// LayerDigests returns the compressed digests of img's layers, in order.
func LayerDigests(img v1.Image) ([]digest.Digest, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]digest.Digest, 0, len(ls))
	for _, l := range ls {
		h, err := l.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, digest.Digest(h.String()))
	}
	return out, nil
}

// BuildProbe compiles test/probe as a static binary into dir and returns
// its contents. It must run from inside the module.
func BuildProbe(dir string) ([]byte, error) {
	out := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out,
		"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build probe: %w\n%s", err, b)
	}
	return os.ReadFile(out)
}

// BaseLayer is the bottom layer of every test image: the directories runc
// mounts over (so it creates nothing in the rootfs) and the probe.
func BaseLayer(probe []byte) []byte {
	tmp := testutil.Dir("tmp")
	tmp.Mode = 0o1777
	bin := testutil.File("bin/probe", "")
	bin.Body, bin.Size, bin.Mode = probe, int64(len(probe)), 0o755
	return testutil.MustLayer(
		testutil.Dir("bin"), bin, testutil.Dir("dev"), testutil.Dir("etc"),
		testutil.Dir("proc"), testutil.Dir("run"), testutil.Dir("sys"), tmp,
		testutil.File("etc/os-release", "NAME=cvmfs-e2e\n"),
	)
}
