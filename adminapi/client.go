package adminapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/opencontainers/go-digest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

const (
	// DefaultTimeout bounds a call of the Client but Report.
	DefaultTimeout = 10 * time.Second
	// ReportTimeout bounds Report: the daemon reads every layer's live
	// figures, from a separate FUSE server if so configured.
	ReportTimeout = 2 * time.Minute
)

// unixScheme prefixes an address that is a unix socket's path.
const unixScheme = "unix://"

// isUnix reports whether address is unix:///path.
func isUnix(address string) bool { return strings.HasPrefix(address, unixScheme) }

// Client asks a daemon's admin API.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client of address: unix:///path (the daemon's admin
// socket, or a unix metrics-address) or host:port (a TCP metrics-address).
func NewClient(address string) (*Client, error) {
	if path, ok := strings.CutPrefix(address, unixScheme); ok {
		if !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("address %q: want unix:///absolute/path: %w", address, errdefs.ErrInvalidArgument)
		}
		var d net.Dialer
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}}
		return &Client{base: "http://admin", http: &http.Client{Transport: tr}}, nil
	}
	return &Client{base: "http://" + strings.TrimPrefix(address, "http://"), http: http.DefaultClient}, nil
}

// Metrics returns the Prometheus metrics (PathMetrics), parsed from the
// text format.
func (c *Client) Metrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	var v map[string]*dto.MetricFamily
	return v, c.do(ctx, PathMetrics, nil, DefaultTimeout, func(u string, body io.Reader) (err error) {
		p := expfmt.NewTextParser(model.UTF8Validation)
		if v, err = p.TextToMetricFamilies(body); err != nil {
			return fmt.Errorf("parse %s: %w", u, err)
		}
		return nil
	})
}

// Stats returns the per-layer accounting of the layers mounted now
// (PathStats).
func (c *Client) Stats(ctx context.Context) ([]usage.LayerStats, error) {
	var v []usage.LayerStats
	return v, c.get(ctx, PathStats, nil, &v, DefaultTimeout)
}

// StatsProfile returns a mounted layer's per-file access profile since its
// mount (PathStatsProfile). The daemon checks layer.
func (c *Client) StatsProfile(ctx context.Context, layer digest.Digest) ([]usage.FileAccess, error) {
	var v []usage.FileAccess
	return v, c.get(ctx, PathStatsProfile, url.Values{"layer": {layer.String()}}, &v, DefaultTimeout)
}

// LayerUsage returns a layer's recorded usage with its merged profile
// (PathUsageProfile?layer=).
func (c *Client) LayerUsage(ctx context.Context, layer digest.Digest) (usage.LayerUsage, error) {
	var v usage.LayerUsage
	return v, c.get(ctx, PathUsageProfile, url.Values{"layer": {layer.String()}}, &v, DefaultTimeout)
}

// ImageUsage returns the recorded usage of each layer of image served from
// the store (PathUsageProfile?image=).
func (c *Client) ImageUsage(ctx context.Context, image string) ([]usage.LayerUsage, error) {
	var v []usage.LayerUsage
	return v, c.get(ctx, PathUsageProfile, url.Values{"image": {image}}, &v, DefaultTimeout)
}

// Images returns every image recorded (PathUsageImages).
func (c *Client) Images(ctx context.Context) ([]usage.ImageUsage, error) {
	var v []usage.ImageUsage
	return v, c.get(ctx, PathUsageImages, nil, &v, DefaultTimeout)
}

// Missing returns the images not fully served, most pulled first
// (PathUsageMissing).
func (c *Client) Missing(ctx context.Context) ([]usage.ImageUsage, error) {
	var v []usage.ImageUsage
	return v, c.get(ctx, PathUsageMissing, nil, &v, DefaultTimeout)
}

// Report returns per layer of images the share of files and bytes read
// (PathUsageReport), within ReportTimeout. Layers the daemon is still
// counting have Counting set: ask again later for their totals.
func (c *Client) Report(ctx context.Context, images ...string) ([]usage.ReportRow, error) {
	var v []usage.ReportRow
	return v, c.get(ctx, PathUsageReport, url.Values{"image": images}, &v, ReportTimeout)
}

// StatusError is the answer of the daemon to a request it refused. It
// unwraps to the errdefs error of its status code.
type StatusError struct {
	// URL is the request's.
	URL string
	// Status is the response's status line ("404 Not Found") and Code its
	// code.
	Status string
	Code   int
	// Message is the start of the response's body, as the daemon wrote it
	// (it may name files and images: quote it before printing it to a
	// terminal).
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: %s: %s", e.URL, e.Status, e.Message)
}

// Unwrap returns the errdefs error of the status code.
func (e *StatusError) Unwrap() error {
	return errhttp.ToNative(e.Code)
}

// get GETs path?query within timeout and decodes its JSON body into v.
func (c *Client) get(ctx context.Context, path string, query url.Values, v any, timeout time.Duration) error {
	return c.do(ctx, path, query, timeout, func(u string, body io.Reader) error {
		if err := json.NewDecoder(body).Decode(v); err != nil {
			return fmt.Errorf("decode %s: %w", u, err)
		}
		return nil
	})
}

// do GETs path?query within timeout and reads its body with read, given
// the URL.
func (c *Client) do(ctx context.Context, path string, query url.Values, timeout time.Duration, read func(u string, body io.Reader) error) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("query the daemon (its admin-socket, or metrics-address): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return &StatusError{URL: u, Status: resp.Status, Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	return read(u, resp.Body)
}
