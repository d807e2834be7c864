package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedianAndQuantile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name        string
		in          []time.Duration
		median, p90 time.Duration
	}{
		{"empty", nil, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond},
		{"odd", ms(9, 1, 5), 5 * time.Millisecond, 9 * time.Millisecond},
		{"even", ms(4, 1, 3, 2), 2500 * time.Microsecond, 4 * time.Millisecond},
		{"ten", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 5500 * time.Microsecond, 9 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := median(tc.in); got != tc.median {
				t.Errorf("median = %v, want %v", got, tc.median)
			}
			sorted := slices.Sorted(slices.Values(tc.in))
			if got := quantile(sorted, 0.9); got != tc.p90 {
				t.Errorf("p90 = %v, want %v", got, tc.p90)
			}
		})
	}
}

func sampleReport() *report {
	return &report{
		Machine: machine{Kernel: "6.18", CPUs: 2},
		Results: []result{
			{Workload: wWarmRead, Variant: "fuse/open", Overlay: []time.Duration{100 * time.Millisecond, 300 * time.Millisecond}, Ours: []time.Duration{150 * time.Millisecond, 250 * time.Millisecond}},
			{Workload: wPull, Variant: "bind", Overlay: []time.Duration{12 * time.Second}, Ours: []time.Duration{600 * time.Millisecond}},
		},
		Passthrough: []passthrough{{Variant: "fuse/open", Mode: "granted"}},
	}
}

func TestTablesShowBothSides(t *testing.T) {
	got := sampleReport().summaryTable()
	for _, want := range []string{
		"| small warm | fuse/open | 200 ms | 200 ms | 1.00× | ≤ 1.3× met |",
		"| pull | bind | 12.00 s | 600 ms | 0.05× | — |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary table lacks %q:\n%s", want, got)
		}
	}
}

func TestUpdateReadme(t *testing.T) {
	dir := t.TempDir()
	readme := filepath.Join(dir, "README.md")
	orig := "# x\n\n## Performance\n\nintro\n\n" + readmeStart + "\nold table\n" + readmeEnd + "\n\n## Testing\n"
	if err := os.WriteFile(readme, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := sampleReport()
	for range 2 { // idempotent
		if err := rep.updateReadme(readme, filepath.Join(dir, "bench", "results")); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(readme)
	got := string(b)
	if strings.Contains(got, "old table") || strings.Count(got, readmeStart) != 1 || strings.Count(got, readmeEnd) != 1 {
		t.Errorf("section not replaced exactly once:\n%s", got)
	}
	for _, want := range []string{"intro\n\n" + readmeStart, readmeEnd + "\n\n## Testing\n", "](bench/results/BENCHMARKS.md)", "](bench/results/ratios.png)", "| small warm | fuse/open |"} {
		if !strings.Contains(got, want) {
			t.Errorf("README lacks %q:\n%s", want, got)
		}
	}

	if err := os.WriteFile(readme, []byte("# no markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.updateReadme(readme, dir); err == nil {
		t.Error("no error for a README without markers")
	}
}

func TestPlots(t *testing.T) {
	rep := sampleReport()
	rep.Prepare = []prepResult{{Variant: "bind", Baseline: prepPoint{VmRSSKiB: 16000},
		Points: []prepPoint{{Layers: 100, VmRSSKiB: 20000, VmHWMKiB: 21000, Median: 5 * time.Millisecond, P90: 9 * time.Millisecond}}}}
	dir := t.TempDir()
	if err := rep.plots(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ratios.png", "rss.png", "prepare.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
