package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
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
	base, client, err := d.client()
	if err != nil {
		return err
	}
	if *layer != "" {
		var profile []usage.FileAccess
		if err := getJSON(ctx, client, base+"/stats/profile?layer="+url.QueryEscape(*layer), &profile); err != nil {
			return err
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
	var stats []usage.LayerStats
	if err := getJSON(ctx, client, base+"/stats", &stats); err != nil {
		return err
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

// adminClient returns the base URL and the HTTP client that reach address:
// unix:///path (the daemon's admin socket, or a unix metrics-address) or
// host:port.
func adminClient(address string) (string, *http.Client, error) {
	if path, ok := strings.CutPrefix(address, "unix://"); ok {
		if !strings.HasPrefix(path, "/") {
			return "", nil, fmt.Errorf("address %q: want unix:///absolute/path", address)
		}
		var d net.Dialer
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}}
		return "http://admin", &http.Client{Transport: tr}, nil
	}
	return "http://" + strings.TrimPrefix(address, "http://"), http.DefaultClient, nil
}

// getJSON GETs url with client and decodes its JSON body into v, within 10 s.
func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	return getJSONWithin(ctx, client, url, v, 10*time.Second)
}

// getJSONWithin is getJSON within timeout.
func getJSONWithin(ctx context.Context, client *http.Client, url string, v any, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("query the daemon (its admin-socket, or metrics-address): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, display(strings.TrimSpace(string(b))))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", url, err)
	}
	return nil
}
