package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestDashboardMetricsExist: every metric the shipped Grafana dashboard
// queries is one the collector exports, with the labels it groups by.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("../deploy/grafana/cvmfs-snapshotter.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
		Templating struct {
			List []struct {
				Definition string
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	reg := prometheus.NewPedanticRegistry()
	src := fakeSource{stats: []usage.LayerStats{{
		Layer: layer, Mounts: 1, Errors: map[string]int64{"EIO": 1}, LastAccess: time.Unix(1, 0),
	}}}
	reg.MustRegister(NewCollector(src))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]bool{}
	for _, mf := range mfs {
		labels[mf.GetName()] = map[string]bool{}
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			labels[mf.GetName()][lp.GetName()] = true
		}
	}
	name := regexp.MustCompile(`cvmfs_snapshotter_[a-z_]+`)
	by := regexp.MustCompile(`by \(([a-z_, ]+)\)`)
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	n := 0
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			n++
			ls, ok := labels[m]
			if !ok {
				t.Errorf("query %q uses %s, which the collector does not export", e, m)
				continue
			}
			for _, g := range by.FindAllStringSubmatch(e, -1) {
				for _, l := range regexp.MustCompile(`[a-z_]+`).FindAllString(g[1], -1) {
					if l != "instance" && !ls[l] {
						t.Errorf("query %q groups %s by %q, a label it lacks", e, m, l)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("the dashboard queries no metric")
	}
}
