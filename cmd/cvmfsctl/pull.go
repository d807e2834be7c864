package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/snapshotters"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
)

func runPull(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	address := fs.String("address", "/run/containerd/containerd.sock", "containerd's gRPC socket")
	namespace := fs.String("namespace", "default", "containerd namespace")
	snapshotter := fs.String("snapshotter", "cvmfs-snapshotter", "snapshotter to unpack into (the proxy plugin's name)")
	plainHTTP := fs.Bool("plain-http", false, "talk plain HTTP to every registry (localhost always is)")
	asJSON := fs.Bool("json", false, "print the outcome as JSON (no progress lines)")
	ref, err := parse(fs, args)
	if err != nil {
		return err
	}
	client, err := containerd.New(*address, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return fmt.Errorf("connect to containerd at %s: %w", *address, err)
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, *namespace)

	match := docker.MatchLocalhost
	if *plainHTTP {
		match = docker.MatchAllHosts
	}
	resolver := docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(match)),
	})
	sn := client.SnapshotService(*snapshotter)
	progress := stdout
	if *asJSON {
		progress = io.Discard
	}
	tr := newTracker(client.ContentStore(), sn, progress)
	stop := tr.poll(ctx, 100*time.Millisecond)
	start := time.Now()
	img, err := client.Pull(ctx, ref,
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(*snapshotter),
		containerd.WithResolver(resolver),
		containerd.WithImageHandlerWrapper(func(h images.Handler) images.Handler {
			return tr.wrap(withMediaTypeLabels(snapshotters.AppendInfoHandlerWrapper(ref)(h)))
		}),
	)
	stop()
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	sum := tr.finish(ctx)
	if *asJSON {
		return printJSON(stdout, struct {
			Image  string        `json:"image"`
			Digest string        `json:"digest"`
			Layers []layerResult `json:"layers"`
		}{img.Name(), img.Target().Digest.String(), sum.results})
	}
	fmt.Fprintf(stdout, "pulled %s (%s) in %s: %d layers, %d from CVMFS (%s), %d downloaded (%s)\n",
		img.Name(), img.Target().Digest, time.Since(start).Round(time.Millisecond),
		sum.layers, sum.remote, humanBytes(sum.remoteBytes), sum.downloaded, humanBytes(sum.downloadedBytes))
	return nil
}

// withMediaTypeLabels adds each layer's media type to the labels its
// extraction snapshot gets (snapshot.LabelLayerMediaType), so that the
// snapshotter can tell a zstd layer missing from the repository from any
// other.
func withMediaTypeLabels(h images.Handler) images.Handler {
	return images.HandlerFunc(func(ctx context.Context, desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		children, err := h.Handle(ctx, desc)
		if err != nil || !images.IsManifestType(desc.MediaType) {
			return children, err
		}
		for i := range children {
			c := &children[i]
			if images.IsLayerType(c.MediaType) {
				if c.Annotations == nil {
					c.Annotations = map[string]string{}
				}
				c.Annotations[snapshot.LabelLayerMediaType] = c.MediaType
			}
		}
		return children, nil
	})
}
