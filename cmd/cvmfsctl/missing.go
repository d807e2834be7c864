package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/distribution/reference"
)

func runMissing(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("missing", flag.ContinueOnError)
	var d daemonFlags
	d.register(fs)
	ducc := fs.Bool("ducc", false, "print the images as entries of a DUCC wish list (the input: list of a recipe)")
	pos, err := positional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return errArgs("missing", "unexpected arguments %v", pos)
	}
	client, err := d.client()
	if err != nil {
		return err
	}
	images, err := client.Missing(ctx)
	if err != nil {
		return daemonError(err)
	}
	switch {
	case d.json:
		return printJSON(stdout, images)
	case *ducc:
		fmt.Fprintln(stdout, "# images not fully served from CVMFS, most pulled first: entries of a DUCC recipe's input: list")
		for _, img := range images {
			if in, ok := duccInput(img.Image); ok {
				fmt.Fprintf(stdout, "- '%s'\n", in)
			} else {
				fmt.Fprintf(stdout, "# not an image reference DUCC can take: %q\n", img.Image)
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tPULLS\tLAYERS PULLED\tREASONS")
	for _, img := range images {
		pulled := 0
		var reasons []string
		for _, l := range img.Layers {
			if !l.Served {
				pulled++
				if r := display(l.Reason); !slices.Contains(reasons, r) {
					reasons = append(reasons, r)
				}
			}
		}
		name := display(img.Image)
		if name == "" {
			name = "(image not named by the labels)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d of %d\t%s\n", name, img.Pulls, pulled, len(img.Layers), strings.Join(reasons, ","))
	}
	return tw.Flush()
}

// duccInput returns ref as DUCC's recipes name images:
// https://registry/repository:tag, Docker Hub as registry.hub.docker.com.
func duccInput(ref string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", false
	}
	named = reference.TagNameOnly(named)
	host, path := reference.Domain(named), reference.Path(named)
	if host == "docker.io" {
		host = "registry.hub.docker.com"
	}
	s := "https://" + host + "/" + path
	if t, ok := named.(reference.Tagged); ok {
		s += ":" + t.Tag()
	}
	if dg, ok := named.(reference.Digested); ok {
		s += "@" + dg.Digest().String()
	}
	return s, true
}
