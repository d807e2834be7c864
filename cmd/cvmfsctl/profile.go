package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

func runProfile(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	var d daemonFlags
	d.register(fs)
	asCSV := fs.Bool("csv", false, "print CSV: layer,path,opens,bytes")
	publish := fs.Bool("publish", false, "print the layer's access profile as a repository publishes it, next to the layer in .metadata/"+usage.PublishedProfileName+", for nodes to prefetch")
	pos, err := positional(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errArgs("profile", "want one LAYER (sha256:...) or IMAGE, got %d arguments", len(pos))
	}
	client, err := d.client()
	if err != nil {
		return err
	}
	var layers []usage.LayerUsage
	if dg, err := digest.Parse(pos[0]); *publish && err != nil {
		return errArgs("profile", "--publish wants a LAYER (sha256:...), got %q", pos[0])
	} else if err == nil {
		u, err := client.LayerUsage(ctx, dg)
		if err != nil {
			return daemonError(err)
		}
		layers = []usage.LayerUsage{u}
	} else if layers, err = client.ImageUsage(ctx, pos[0]); err != nil {
		return daemonError(err)
	}
	switch {
	case *publish:
		return printJSON(stdout, usage.PublishProfile(layers[0]))
	case d.json:
		return printJSON(stdout, layers)
	case *asCSV:
		w := csv.NewWriter(stdout)
		w.Write([]string{"layer", "path", "opens", "bytes"})
		for _, l := range layers {
			for _, f := range l.Profile {
				w.Write([]string{l.Layer.String(), f.Path, strconv.FormatInt(f.Opens, 10), strconv.FormatInt(f.Bytes, 10)})
			}
		}
		w.Flush()
		return w.Error()
	}
	for i, l := range layers {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "layer %s (accounting %s%s): %d files, %d opens, %s read%s%s\n", display(l.Layer.String()), display(l.Accounting.String()),
			map[bool]string{true: ", mounted"}[l.Mounted], l.Files, l.Opens, humanBytes(l.Bytes),
			accessSpan(l), map[bool]string{true: " (profile truncated at the profile limit)"}[l.Truncated])
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "OPENS\tBYTES\tPATH")
		for _, f := range l.Profile {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", f.Opens, humanBytes(f.Bytes), display(f.Path))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func accessSpan(l usage.LayerUsage) string {
	if l.FirstAccess.IsZero() {
		return ""
	}
	return fmt.Sprintf(", first access %s, last %s", l.FirstAccess.Local().Format(time.DateTime), l.LastAccess.Local().Format(time.DateTime))
}
