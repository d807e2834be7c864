package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	dto "github.com/prometheus/client_model/go"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/adminapi"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// TestMetricsScrape: the metrics page parses as Prometheus text, carries
// each mounted layer's series labelled layer, mode and image with the
// exact bytes read, and no series of a layer once its image is removed
// (its last unmount).
func TestMetricsScrape(t *testing.T) {
	env := start(t, harness.Options{Metrics: true})
	ctx := testContext(t)
	ref, layers := pushApp(t, env)
	ingest(t, ctx, env, ref)
	ns := harness.Unique("metrics")
	ctx = env.UseNamespace(ctx, ns)
	cvmfsctlPull(t, env, ns, ref)
	img, err := env.Client.GetImage(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, env, img, harness.RunOptions{}, "cat", "/lib/file-000")

	mfs := scrape(t, ctx, env)
	series := func(mfs map[string]*dto.MetricFamily, name, layer string) []*dto.Metric {
		var out []*dto.Metric
		for _, m := range mfs[name].GetMetric() {
			if label(m, "layer") == layer {
				out = append(out, m)
			}
		}
		return out
	}
	for i, want := range map[int]float64{1: appFileSize, 2: 0} {
		got := series(mfs, "cvmfs_snapshotter_layer_read_bytes_total", layers[i].String())
		if len(got) != 1 || got[0].GetCounter().GetValue() != want || label(got[0], "mode") != "reads" || label(got[0], "image") != ref {
			t.Errorf("read_bytes_total of layer %d: %v, want one series of %v labelled mode=reads image=%s", i, got, want, ref)
		}
		if m := series(mfs, "cvmfs_snapshotter_layer_mounts", layers[i].String()); len(m) != 1 || m[0].GetGauge().GetValue() != 1 {
			t.Errorf("mounts of layer %d: %v", i, m)
		}
	}

	if err := env.Client.ImageService().Delete(ctx, ref, images.SynchronousDelete()); err != nil {
		t.Fatal(err)
	}
	// The snapshots go with containerd's garbage collection, which calls
	// the snapshotter's Remove (and so the last unmount) for each.
	for {
		n := 0
		for _, mf := range scrape(t, ctx, env) {
			for _, l := range layers {
				n += len(series(map[string]*dto.MetricFamily{mf.GetName(): mf}, mf.GetName(), l.String()))
			}
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d series of the image's layers left after its removal", n)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func scrape(t *testing.T, ctx context.Context, env *harness.Env) map[string]*dto.MetricFamily {
	t.Helper()
	c, err := adminapi.NewClient(env.MetricsAddr)
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := c.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}
