package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
)

func runIngest(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	repoDir := fs.String("repo", "", "root of the DUCC-layout directory to write (required; created mode 0700; must be private or on a nosuid,nodev mount)")
	insecure := fs.Bool("insecure", false, "talk plain HTTP to the registry, or HTTPS without verifying it")
	platform := fs.String("platform", "linux/amd64", "platform to pick from a multi-platform image")
	asJSON := fs.Bool("json", false, "print the outcome as JSON")
	ref, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *repoDir == "" {
		return fmt.Errorf("ingest: --repo is required")
	}
	var nopts []name.Option
	if *insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return fmt.Errorf("parse image reference %q: %w", ref, err)
	}
	p, err := v1.ParsePlatform(*platform)
	if err != nil {
		return err
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithPlatform(*p)}
	if *insecure {
		tr := remote.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for by --insecure
		ropts = append(ropts, remote.WithTransport(tr))
	}
	img, err := remote.Image(r, ropts...)
	if err != nil {
		return fmt.Errorf("fetch image %s: %w", ref, err)
	}
	if !*asJSON {
		_, err := ingest(ctx, ducc.New(*repoDir), img, stdout)
		return err
	}
	res, err := ingest(ctx, ducc.New(*repoDir), img, io.Discard)
	if err != nil {
		return err
	}
	return printJSON(stdout, res)
}

// ingestResult is what ingest did with an image (ingest --json).
type ingestResult struct {
	Config digest.Digest   `json:"config"`
	Layers []ingestedLayer `json:"layers"`
}

// ingestedLayer is what ingest did with one layer: "written", "present"
// or "skipped" (Reason says why).
type ingestedLayer struct {
	Digest   digest.Digest `json:"digest"`
	Result   string        `json:"result"`
	Reason   string        `json:"reason,omitempty"`
	Entries  int           `json:"entries,omitempty"`
	DiffSize int64         `json:"diffSize,omitempty"`
}

// ingest writes every layer of img that DUCC would ingest into repo,
// reports one line per layer to stdout and returns what it did.
func ingest(ctx context.Context, repo *ducc.Repo, img v1.Image, stdout io.Writer) (ingestResult, error) {
	if n, err := repo.RemovePartial(ctx); err != nil {
		fmt.Fprintf(stdout, "could not remove every partial layer tree left by interrupted ingests: %v\n", err)
	} else if n > 0 {
		fmt.Fprintf(stdout, "removed %d partial layer trees left by interrupted ingests\n", n)
	}
	config, err := img.ConfigName()
	if err != nil {
		return ingestResult{}, fmt.Errorf("read image config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return ingestResult{}, fmt.Errorf("read image layers: %w", err)
	}
	out := ingestResult{Config: digest.Digest(config.String())}
	var written, present, skipped int
	for i, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return ingestResult{}, err
		}
		mt, err := l.MediaType()
		if err != nil {
			return ingestResult{}, err
		}
		size, _ := l.Size()
		blob := ducc.LayerBlob{
			Digest:    digest.Digest(h.String()),
			MediaType: string(mt),
			Origin:    digest.Digest(config.String()),
			Open: func(context.Context) (io.ReadCloser, error) {
				return l.Compressed()
			},
		}
		prefix := fmt.Sprintf("layer %d/%d %s", i+1, len(layers), h)
		res, err := repo.WriteLayer(ctx, blob)
		il := ingestedLayer{Digest: blob.Digest}
		switch {
		case errors.Is(err, ducc.ErrUnsupportedLayer):
			skipped++
			il.Result, il.Reason = "skipped", err.Error()
			fmt.Fprintf(stdout, "%s skipped: %v\n", prefix, err)
		case err != nil:
			return ingestResult{}, err
		case res.Present:
			present++
			il.Result = "present"
			fmt.Fprintf(stdout, "%s already present\n", prefix)
		default:
			written++
			il.Result, il.Entries, il.DiffSize = "written", res.Entries, res.DiffSize
			fmt.Fprintf(stdout, "%s written: %d entries, %s compressed, %s unpacked\n",
				prefix, res.Entries, humanBytes(size), humanBytes(res.DiffSize))
		}
		out.Layers = append(out.Layers, il)
	}
	fmt.Fprintf(stdout, "image config %s: %d layers written, %d already present, %d skipped\n", config, written, present, skipped)
	return out, nil
}
