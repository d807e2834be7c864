package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
)

func runStats(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	var d daemonFlags
	d.register(fs)
	layer := fs.String("layer", "", "print this layer's per-file access profile (since its last unmount) instead of the per-layer table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("stats: unexpected arguments %v", fs.Args())
	}
	client, err := d.client()
	if err != nil {
		return err
	}
	if *layer != "" {
		// The daemon checks the digest.
		profile, err := client.StatsProfile(ctx, digest.Digest(*layer))
		if err != nil {
			return daemonError(err)
		}
		if d.json {
			return printJSON(stdout, profile)
		}
		tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "OPENS\tBYTES\tPATH")
		for _, f := range profile {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", f.Opens, humanBytes(f.Bytes), display(f.Path))
		}
		return tw.Flush()
	}
	stats, err := client.Stats(ctx)
	if err != nil {
		return daemonError(err)
	}
	if d.json {
		return printJSON(stdout, stats)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tMOUNTS\tACCOUNTING\tPASSTHROUGH\tOPENS\tFILES\tBYTES READ\tERRORS\tABSENT\tLAST ACCESS")
	for _, s := range stats {
		read := humanBytes(s.BytesRead)
		if s.BytesAreFileSizes {
			read += " (sizes opened)"
		}
		mounts := strconv.Itoa(s.Mounts)
		errs := int64(0)
		for _, n := range s.Errors {
			errs += n
		}
		if s.Removed {
			mounts += " (REMOVED FROM THE STORE: pull the image again)"
		}
		last := "-"
		if !s.LastAccess.IsZero() {
			last = s.LastAccess.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\t%d\t%s\t%d\t%d\t%s\n", display(s.Layer.String()), mounts, display(s.Accounting.String()), s.Passthrough,
			s.Opens, s.UniqueFiles, read, errs, s.Absent, last)
	}
	return tw.Flush()
}

// defaultAdminSocket is the daemon's admin socket under its default --root.
const defaultAdminSocket = "/var/lib/containerd-cvmfs-grpc/admin.sock"
