package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

func runReport(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	var d daemonFlags
	d.register(fs)
	htmlOut := fs.String("html", "", "also write the chart and table as a self-contained HTML page to this file")
	svgOut := fs.String("svg", "", "also write the chart as SVG to this file")
	pngOut := fs.String("png", "", "also write the chart as PNG to this file")
	wait := fs.Duration("wait", time.Minute, "wait this long for layers still being counted (then report them as counting)")
	images, err := positional(fs, args)
	if err != nil {
		return err
	}
	if len(images) == 0 {
		return errArgs("report", "want one or more IMAGEs")
	}
	client, err := d.client()
	if err != nil {
		return err
	}
	var rows []usage.ReportRow
	deadline := time.Now().Add(*wait)
	for {
		// The daemon counts layers in the background; a report waits
		// only for its live figures.
		if rows, err = client.Report(ctx, images...); err != nil {
			return daemonError(err)
		}
		if !counting(rows) || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(reportPoll):
		}
	}
	for _, out := range []struct {
		path  string
		write func(string, []usage.ReportRow) error
	}{{*svgOut, writeChart}, {*pngOut, writeChart}, {*htmlOut, writeHTML}} {
		if out.path == "" {
			continue
		}
		if err := out.write(out.path, rows); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if d.json {
		return printJSON(stdout, rows)
	}
	return printReport(stdout, rows)
}

// reportPoll is how often report asks again while layers are counted.
const reportPoll = 500 * time.Millisecond

func counting(rows []usage.ReportRow) bool {
	for _, r := range rows {
		if r.Counting {
			return true
		}
	}
	return false
}

// printReport writes the rows as a table.
func printReport(w io.Writer, rows []usage.ReportRow) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "IMAGE\tLAYER\tFROM\tFILES READ\tOF\tFILES %\tBYTES READ\tOF\tBYTES %\t")
	for _, r := range rows {
		from := "cvmfs"
		if !r.Served {
			from = "registry (" + display(r.Reason) + ")"
		}
		if !r.Served {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t\n", display(r.Image), shortDigest(string(r.Layer)), from)
			continue
		}
		note := ""
		if r.Truncated {
			note = " (truncated)"
		}
		if r.Counting {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d%s\tcounting\t-\t%s\tcounting\t-\t\n", display(r.Image), shortDigest(string(r.Layer)), from,
				r.FilesRead, note, humanBytes(r.BytesRead))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d%s\t%d\t%.1f%%\t%s\t%s\t%.1f%%\t\n", display(r.Image), shortDigest(string(r.Layer)), from,
			r.FilesRead, note, r.FilesTotal, percent(r.FilesRead, r.FilesTotal),
			humanBytes(r.BytesRead), humanBytes(r.BytesTotal), percent(r.BytesRead, r.BytesTotal))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if counting(rows) {
		_, err := fmt.Fprintln(w, "some layers are still being counted by the daemon: run the report again in a while")
		return err
	}
	return nil
}
