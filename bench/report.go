package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// workloadInfo describes one workload for the report.
type workloadInfo struct {
	Title  string  // table heading
	Short  string  // plot label
	How    string  // what was timed
	Target float64 // ours/overlayfs at most; 0: none
}

var workloads = map[string]workloadInfo{
	wFirstRead: {"Small files, first run after the pull: open+read of every file", "small first",
		"`probe readall /data`, time inside the container; the first run right after the pull, no cache dropped (the store's files, and overlayfs' freshly unpacked ones, are in the page cache); over the CVMFS-like store every file's first open is a cache miss costing 5 ms", 0},
	wColdRead: {"Small files, cold: open+read of every file", "small cold",
		"`probe readall /data` (walk, open and read every file), time inside the container; the first run after the pull, page/dentry/inode caches dropped (`echo 3 > /proc/sys/vm/drop_caches`) before the run on either side", 2},
	wWarmRead: {"Small files, warm: open+read of every file", "small warm",
		"the same, 3rd run of each side, no cache dropped", 1.3},
	wWalk: {"Walk of / with lstat, xattrs and SHA-256, warm", "walk warm",
		"`probe walksum /` (the walk of `probe walk`: lstat, listxattr/getxattr, SHA-256 of every regular file), time inside the container, after one untimed walk of each side", 1.5},
	wStart: {"Container start to exit", "start",
		"`probe echo hi` in a new container, wall time of `env.Run` (create container and snapshot, start task, wait, delete)", 1.1},
	wSeqFirst: {"Sequential read of one large file, first run after the pull", "seq first",
		"`probe readall /big/file` (1 MiB reads), time inside the container; the first run right after the pull, no cache dropped (over the CVMFS-like store: one miss)", 0},
	wSeqCold: {"Sequential read of one large file, cold", "seq cold",
		"`probe readall /big/file` (1 MiB reads), time inside the container; first run after the pull, caches dropped before each side", 0},
	wSeqWarm: {"Sequential read of one large file, warm", "seq warm",
		"the same, 2nd run of each side", 0},
	wPull: {"Pull of a ~1 GiB image in 20 layers", "pull",
		"wall time of `env.Pull` (containerd Go client, unpack): ours with the layer labels, every layer served from the repository; overlayfs a plain pull that downloads and unpacks every layer; caches dropped before each", 0},
}

var workloadOrder = []string{wFirstRead, wColdRead, wWarmRead, wWalk, wStart, wSeqFirst, wSeqCold, wSeqWarm, wPull}

// machine is what the figures depend on.
type machine struct {
	Kernel    string
	CPUs      int
	CPUModel  string
	MemoryGiB float64
	LoadStart string
	LoadEnd   string
	GitCommit string
	GoVersion string
}

func (m machine) summary() string {
	return fmt.Sprintf("Linux %s, %d CPUs (%s), %.0f GiB, load %s", m.Kernel, m.CPUs, m.CPUModel, m.MemoryGiB, m.LoadStart)
}

// machineFacts reads the kernel, CPUs, memory, load and source commit.
func machineFacts() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadStart: loadAvg()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.MemoryGiB = float64(si.Totalram) * float64(si.Unit) / (1 << 30)
	}
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		m.GitCommit = strings.TrimSpace(string(out))
	}
	return m
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// report is everything one run measured.
type report struct {
	Quick       bool
	Config      string
	Machine     machine
	Passthrough []passthrough
	Results     []result
	Prepare     []prepResult
	Finished    time.Time
	Duration    time.Duration
}

// median returns the median of ds (the mean of the middle two for an even
// count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// ratio is median(ours) / median(overlayfs).
func (r result) ratio() float64 {
	ov := median(r.Overlay)
	if ov == 0 {
		return 0
	}
	return float64(median(r.Ours)) / float64(ov)
}

// last formats the last sample of overlayfs (which=0) or ours (1).
func (r *result) last(which int) string {
	if r == nil {
		return "-"
	}
	s := r.Overlay
	if which == 1 {
		s = r.Ours
	}
	if len(s) == 0 {
		return "-"
	}
	return ms(s[len(s)-1])
}

// ms formats a duration in milliseconds (seconds from 10 s) with three
// significant digits or so.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.2f ms", v)
	}
}

// mib formats KiB as MiB.
func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// verdict compares a ratio with its target.
func verdict(ratio, target float64) string {
	if target == 0 {
		return "—"
	}
	if ratio <= target {
		return fmt.Sprintf("≤ %.1f× met", target)
	}
	return fmt.Sprintf("≤ %.1f× **not met**", target)
}

// workloadTable is the markdown table of one workload, a row per variant.
func (rep *report) workloadTable(w string) string {
	var b strings.Builder
	b.WriteString("| workload | variant | overlayfs | ours | ours / overlayfs | target |\n|---|---|---:|---:|---:|---|\n")
	for _, r := range rep.Results {
		if r.Workload != w {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f× | %s |\n", workloads[w].Short, r.Variant,
			ms(median(r.Overlay)), ms(median(r.Ours)), r.ratio(), verdict(r.ratio(), workloads[w].Target))
	}
	return b.String()
}

// summaryTable is every workload in one table (for docs/performance.md and the
// terminal).
func (rep *report) summaryTable() string {
	var b strings.Builder
	b.WriteString("| workload | variant | overlayfs | ours | ours / overlayfs | target |\n|---|---|---:|---:|---:|---|\n")
	for _, w := range workloadOrder {
		b.WriteString(strings.SplitN(rep.workloadTable(w), "\n", 3)[2])
	}
	return b.String()
}

// prepareTable is the memory and Prepare latency table.
func (rep *report) prepareTable() string {
	var b strings.Builder
	b.WriteString("| variant | layers mounted | VmRSS | VmHWM | Prepare median | Prepare p90 | min | max |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, pr := range rep.Prepare {
		fmt.Fprintf(&b, "| %s | 0 | %s | %s | | | | |\n", pr.Variant, mib(pr.Baseline.VmRSSKiB), mib(pr.Baseline.VmHWMKiB))
		for _, pt := range pr.Points {
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s |\n", pr.Variant, pt.Layers, mib(pt.VmRSSKiB), mib(pt.VmHWMKiB),
				ms(pt.Median), ms(pt.P90), ms(pt.Min), ms(pt.Max))
		}
	}
	return b.String()
}

// prepareSummary states the memory and Prepare targets at 200 and at the
// most layers measured.
func (rep *report) prepareSummary() string {
	var b strings.Builder
	b.WriteString("| variant | VmRSS at 200 layers (target ≤ 100 MB) | VmRSS at the most layers (target ≤ 200 MB at 1,000) | Prepare median, first 100 → last 100 (target ≤ 5 ms, flat) |\n|---|---:|---:|---:|\n")
	for _, pr := range rep.Prepare {
		if len(pr.Points) == 0 {
			continue
		}
		at200 := "—"
		for _, pt := range pr.Points {
			if pt.Layers == 200 {
				at200 = mb(pt.VmRSSKiB)
			}
		}
		first, lastPt := pr.Points[0], pr.Points[len(pr.Points)-1]
		fmt.Fprintf(&b, "| %s | %s | %s at %d | %s → %s |\n", pr.Variant, at200, mb(lastPt.VmRSSKiB), lastPt.Layers, ms(first.Median), ms(lastPt.Median))
	}
	return b.String()
}

// mb formats KiB as (decimal) MB, the unit of the targets.
func mb(kib int64) string { return fmt.Sprintf("%.0f MB", float64(kib)*1024/1e6) }

// markdown renders BENCHMARKS.md.
func (rep *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Container benchmarks: cvmfs-snapshotter vs containerd's overlayfs snapshotter\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (`go run ./bench`), finished %s after %s.", rep.Finished.Format("2006-01-02 15:04 UTC"), rep.Duration)
	if rep.Quick {
		b.WriteString(" **Quick run (`-quick`): small sizes, few repetitions; not for comparison.**")
	}
	b.WriteString("\n\n")
	m := rep.Machine
	fmt.Fprintf(&b, "- machine: Linux %s, %d CPUs (%s), %.0f GiB RAM; load average %s at the start, %s at the end (other work shares the machine)\n",
		m.Kernel, m.CPUs, m.CPUModel, m.MemoryGiB, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(&b, "- source: %s, %s; containerd 2 from the test tools, runc, everything local (in-process registry, DUCC-shaped repository on the same disk)\n", m.GitCommit, m.GoVersion)
	b.WriteString("- FUSE passthrough (from the daemon's log):")
	for _, p := range rep.Passthrough {
		fmt.Fprintf(&b, " %s: %s;", p.Variant, p.Mode)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- sizes: %s\n", rep.Config)
	b.WriteString("- variants:")
	for i, p := range rep.Passthrough {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " `%s` (%s)", p.Variant, variantDoc(p.Variant))
	}
	b.WriteString("\n")
	b.WriteString("- method: one environment (registry, repository, containerd 2, the daemon), the daemon restarted with each variant's configuration; each image is pulled both into overlayfs (a full pull) and through the daemon (every layer remote, checked), each repetition in a fresh namespace; the two sides alternate (overlayfs first on even repetitions, ours first on odd ones). Times are medians of the repetitions; the ratio is median(ours) / median(overlayfs), **lower is better**. Every sample is in `results.json`.\n")
	b.WriteString("- cold runs: `echo 3 > /proc/sys/vm/drop_caches` (after `sync`) before the cold run of **either** side, so both start with empty page, dentry and inode caches (for ours: the backing files and the FUSE mounts' kernel caches; every repetition pulls the image again, so its layers are mounted afresh).\n\n")
	b.WriteString("![ours / overlayfs per workload and variant](ratios.png)\n\n")
	for _, w := range workloadOrder {
		info := workloads[w]
		fmt.Fprintf(&b, "## %s\n\n%s.\n\n%s\n", info.Title, strings.ToUpper(info.How[:1])+info.How[1:], rep.workloadTable(w))
	}
	if len(rep.Prepare) > 0 {
		b.WriteString("## Daemon memory and remote Prepare latency vs layers mounted\n\n")
		b.WriteString("A fresh daemon per variant; one-file layers written straight into the repository; then, through the daemon's gRPC socket (containerd's snapshot proxy client, no containerd in between), `Prepare(\"extract-… <chainID>\", parent = previous chainID)` with the labels containerd passes (`containerd.io/snapshot.ref`, `containerd.io/snapshot/cri.layer-digest`), one layer after the other, as images of 20 layers (so that the figures follow the layers mounted, not the depth of one chain, which containerd's metadata store walks on every Prepare), each answered `AlreadyExists` (served remotely, checked). VmRSS and VmHWM from `/proc/<pid>/status` of the daemon after every 100 layers; latency figures are over the Prepare calls of those 100 layers.\n\n")
		b.WriteString(rep.prepareSummary() + "\n")
		b.WriteString(rep.prepareTable() + "\n")
		for _, pr := range rep.Prepare {
			fmt.Fprintf(&b, "Removing the %d snapshots of %s again (topmost first, each unmounting its layer) took %s.\n", pr.lastLayers(), pr.Variant, ms(pr.RemoveAll))
		}
		b.WriteString("\n![daemon memory vs layers mounted](rss.png)\n\n![Prepare latency vs layers mounted](prepare.png)\n")
	}
	return b.String()
}

// lastLayers is the number of layers mounted at the end.
func (pr prepResult) lastLayers() int {
	if len(pr.Points) == 0 {
		return 0
	}
	return pr.Points[len(pr.Points)-1].Layers
}

// write writes BENCHMARKS.md, results.json and the plots into dir.
func (rep *report) write(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "BENCHMARKS.md"), []byte(rep.markdown()), 0o644); err != nil {
		return err
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return rep.plots(dir)
}

// Markers of the section of docs/performance.md the benchmark owns.
const (
	readmeStart = "<!-- bench:start -->"
	readmeEnd   = "<!-- bench:end -->"
)

// updateReadme replaces what lies between the markers in readme with the
// summary table and links to the results in out.
func (rep *report) updateReadme(readme, out string) error {
	b, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	i, j := bytes.Index(b, []byte(readmeStart)), bytes.Index(b, []byte(readmeEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s section", readme, readmeStart, readmeEnd)
	}
	rel, err := filepath.Rel(filepath.Dir(readme), out)
	if err != nil {
		rel = out
	}
	rel = filepath.ToSlash(rel)
	var s strings.Builder
	s.WriteString(readmeStart + "\n")
	fmt.Fprintf(&s, "Containers on this snapshotter vs the same containers on containerd's overlayfs snapshotter, "+
		"medians of repetitions from one `make bench` run (%s, Linux %s, %d CPUs, load average %s at the start and %s at the end from other work on the machine; FUSE passthrough:",
		rep.Finished.Format("2006-01-02"), rep.Machine.Kernel, rep.Machine.CPUs, rep.Machine.LoadStart, rep.Machine.LoadEnd)
	for k, p := range rep.Passthrough {
		if k > 0 {
			s.WriteString(";")
		}
		fmt.Fprintf(&s, " %s %s", p.Variant, p.Mode)
	}
	s.WriteString("). Ratio = ours / overlayfs, lower is better; cold runs drop the kernel caches before either side.")
	if rep.Quick {
		s.WriteString(" **Quick run: not for comparison.**")
	}
	fmt.Fprintf(&s, " Method, sizes and every table: [`%s/BENCHMARKS.md`](%s/BENCHMARKS.md).\n\n", rel, rel)
	s.WriteString(rep.summaryTable() + "\n")
	if len(rep.Prepare) > 0 {
		s.WriteString(rep.prepareSummary() + "\n")
	}
	fmt.Fprintf(&s, "![ours / overlayfs](%s/ratios.png)\n", rel)
	if len(rep.Prepare) > 0 {
		fmt.Fprintf(&s, "![daemon memory vs layers mounted](%s/rss.png)\n![Prepare latency vs layers mounted](%s/prepare.png)\n", rel, rel)
	}
	s.WriteString(readmeEnd)
	nb := slices.Concat(b[:i], []byte(s.String()), b[j+len(readmeEnd):])
	return os.WriteFile(readme, nb, 0o644)
}
