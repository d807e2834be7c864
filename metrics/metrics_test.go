package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

type fakeSource struct{ stats []usage.LayerStats }

func (f fakeSource) Stats() ([]usage.LayerStats, error) { return f.stats, nil }
func (f fakeSource) Profile(layer digest.Digest) ([]usage.FileAccess, error) {
	return []usage.FileAccess{{Path: "bin/sh", Opens: 2, Bytes: 100}}, nil
}

var layer = digest.Digest("sha256:" + strings.Repeat("c", 64))

func source() fakeSource {
	return fakeSource{stats: []usage.LayerStats{{
		Layer: layer, Mounts: 2, Accounting: usage.AccountReads, Opens: 7, BytesRead: 4096, Lookups: 11,
		Errors: map[string]int64{"EIO": 3}, Absent: 26, Removed: true, LastAccess: time.Unix(1700000000, 0),
	}}}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	imageOf := func(d digest.Digest) string {
		if d == layer {
			return "registry.example/app:1"
		}
		return ""
	}
	if err := reg.Register(NewCollector(source(), WithLayerImage(imageOf))); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP cvmfs_snapshotter_layer_opens_total Files opened in the layer (in "reads" accounting: fetches of a file's content from its start; opens served from the page cache are not seen).
# TYPE cvmfs_snapshotter_layer_opens_total counter
cvmfs_snapshotter_layer_opens_total{image="registry.example/app:1",layer="` + layer.String() + `",mode="reads"} 7
# HELP cvmfs_snapshotter_layer_errors_total Errors answered for the layer, by errno: failures (EIO, ESTALE, an entry gone from the layer store, ...), never a name that does not exist (see absent_names_total).
# TYPE cvmfs_snapshotter_layer_errors_total counter
cvmfs_snapshotter_layer_errors_total{errno="EIO",image="registry.example/app:1",layer="` + layer.String() + `",mode="reads"} 3
# HELP cvmfs_snapshotter_layer_absent_names_total Lookups of names, and reads of extended attributes, that do not exist in the layer: overlayfs makes them in every layer as it merges directories; not errors.
# TYPE cvmfs_snapshotter_layer_absent_names_total counter
cvmfs_snapshotter_layer_absent_names_total{image="registry.example/app:1",layer="` + layer.String() + `",mode="reads"} 26
# HELP cvmfs_snapshotter_layer_mounts Current FUSE mounts of the layer.
# TYPE cvmfs_snapshotter_layer_mounts gauge
cvmfs_snapshotter_layer_mounts{image="registry.example/app:1",layer="` + layer.String() + `",mode="reads"} 2
# HELP cvmfs_snapshotter_layer_removed 1 while the layer store no longer holds the mounted layer (removed by the repository's garbage collection): its containers get ENOENT and new ones on it fail until the image is pulled again.
# TYPE cvmfs_snapshotter_layer_removed gauge
cvmfs_snapshotter_layer_removed{image="registry.example/app:1",layer="` + layer.String() + `",mode="reads"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"cvmfs_snapshotter_layer_opens_total", "cvmfs_snapshotter_layer_errors_total", "cvmfs_snapshotter_layer_absent_names_total", "cvmfs_snapshotter_layer_mounts", "cvmfs_snapshotter_layer_removed"); err != nil {
		t.Fatal(err)
	}
}

// TestInvalidLabel: a series whose label is not valid UTF-8 is left out;
// the others are still gathered.
func TestInvalidLabel(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	src := source()
	src.stats = append(src.stats, usage.LayerStats{Layer: digest.Digest("sha256:" + strings.Repeat("d", 64)), Mounts: 1})
	if err := reg.Register(NewCollector(src, WithLayerImage(func(d digest.Digest) string {
		if d == layer {
			return "bad\xffimage"
		}
		return "ok:1"
	}))); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "layer" && lp.GetValue() == layer.String() {
					t.Errorf("%s: series of the invalid label gathered", mf.GetName())
				}
			}
		}
	}
	if len(mfs) == 0 {
		t.Error("nothing gathered")
	}
}
