package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/docker/go-units"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// row is one layer of the demo's table.
type row struct {
	layer     digest.Digest
	fromCVMFS bool
	size      int64 // compressed
	fetched   int64 // bytes the registry sent for it
	files     int64 // distinct files the container opened (CVMFS layers)
	read      int64 // bytes the container read (CVMFS layers)
	sizesOnly bool  // read is the sizes of the files opened (passthrough)
	accounted bool  // the daemon has stats for the layer
}

// table joins the snapshot labels, the registry's log and the daemon's
// /stats into one row per layer.
func table(ctx context.Context, env *harness.Env, img containerd.Image) ([]row, error) {
	states, err := env.Layers(ctx, img, harness.SnapshotterName)
	if err != nil {
		return nil, err
	}
	stats, err := env.LayerStats(ctx)
	if err != nil {
		return nil, err
	}
	served := env.Registry.Served()
	rows := make([]row, len(states))
	for i, st := range states {
		r := row{layer: st.Digest, fromCVMFS: st.Remote, size: st.Size, fetched: served[st.Digest]}
		for _, s := range stats {
			if s.Layer == st.Digest {
				r.accounted = true
				r.files, r.read, r.sizesOnly = s.UniqueFiles, s.BytesRead, s.BytesAreFileSizes
			}
		}
		rows[i] = r
	}
	return rows, nil
}

func printTable(out io.Writer, rows []row, accounting string) {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  layer\tfrom\tsize\tfetched\tfiles read\tbytes read\t")
	var cvmfs, fetched int64
	for _, r := range rows {
		from, files, read := "registry", "-", "-"
		if r.fromCVMFS {
			from = "CVMFS"
			cvmfs += r.size
		}
		if r.accounted {
			files, read = fmt.Sprint(r.files), human(r.read)
			if r.sizesOnly {
				read += "*"
			}
		}
		fetched += r.fetched
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t\n", short(r.layer), from, human(r.size), human(r.fetched), files, read)
	}
	tw.Flush()
	fmt.Fprintf(out, "\n  %s of layers served from CVMFS, %s fetched from the registry.\n", human(cvmfs), human(fetched))
	fmt.Fprintf(out, "  files/bytes read: the daemon's per-layer accounting (%q); layers from the registry live on\n", accounting)
	fmt.Fprintln(out, "  containerd's own snapshot dirs and are not accounted (-).")
	for _, r := range rows {
		if r.sizesOnly {
			fmt.Fprintln(out, "  * sizes of the files opened: with kernel passthrough the daemon sees opens, not reads.")
			break
		}
	}
}

func short(d digest.Digest) string {
	if len(d.Encoded()) < 12 {
		return d.String()
	}
	return d.Algorithm().String() + ":" + d.Encoded()[:12]
}

// human formats n in binary units.
func human(n int64) string { return units.BytesSize(float64(n)) }

// stepper returns a function printing numbered steps.
func stepper(out io.Writer) func(format string, args ...any) {
	n := 0
	return func(format string, args ...any) {
		n++
		fmt.Fprintf(out, "\n[%d] %s\n", n, fmt.Sprintf(format, args...))
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func trim(s string) string { return strings.TrimSpace(s) }

// shortArgs shows a long argument list by its ends.
func shortArgs(args []string) string {
	if len(args) <= 5 {
		return strings.Join(args, " ")
	}
	return fmt.Sprintf("%s %s ... %s (%d files)", args[0], args[1], args[len(args)-1], len(args)-2)
}

// prefixWriter prefixes every line written through it.
type prefixWriter struct {
	w      io.Writer
	prefix string
	bol    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	for _, c := range b {
		if p.bol {
			if _, err := io.WriteString(p.w, p.prefix); err != nil {
				return 0, err
			}
		}
		if _, err := p.w.Write([]byte{c}); err != nil {
			return 0, err
		}
		p.bol = c == '\n'
	}
	return len(b), nil
}
