package testutil

import (
	"bytes"
	"io"
	"runtime"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// Image builds a linux image of this machine's architecture from
// compressed layer blobs (Layer for gzip, ZstdLayer for zstd), dated Epoch,
// with no command: push it with Registry.Push.
func Image(layers ...[]byte) (v1.Image, error) { return ImageRunning(nil, nil, layers...) }

// ImageRunning is Image with cmd as the default command, run with the
// environment env.
func ImageRunning(cmd, env []string, layers ...[]byte) (v1.Image, error) {
	return ImageAnnotated(cmd, env, nil, layers...)
}

// ImageAnnotated is ImageRunning with annotations[i] on the manifest's
// descriptor of layer i (none past the end of annotations).
func ImageAnnotated(cmd, env []string, annotations []map[string]string, layers ...[]byte) (v1.Image, error) {
	adds := make([]mutate.Addendum, 0, len(layers))
	for i, blob := range layers {
		opts := []tarball.LayerOption{tarball.WithMediaType(types.DockerLayer)}
		if bytes.HasPrefix(blob, zstdMagic) {
			opts = []tarball.LayerOption{tarball.WithMediaType(types.OCILayerZStd), tarball.WithCompression(compression.ZStd)}
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(blob)), nil
		}, opts...)
		if err != nil {
			return nil, err
		}
		add := mutate.Addendum{Layer: l, History: v1.History{CreatedBy: "testutil", Created: v1.Time{Time: Epoch}}}
		if i < len(annotations) {
			add.Annotations = annotations[i]
		}
		adds = append(adds, add)
	}
	img, err := mutate.Append(empty.Image, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created = v1.Time{Time: Epoch}
	cf.Config.Cmd, cf.Config.Env = cmd, env
	return mutate.ConfigFile(img, cf)
}
