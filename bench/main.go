// Command benchmark measures containers whose layers come through
// cvmfs-snapshotter against the same containers on containerd's own
// overlayfs snapshotter, on one machine, in the embedded environment of
// test/harness (local DUCC-shaped repository, in-process registry,
// containerd 2.x, the daemon). For each daemon variant (fuse/reads,
// fuse/open, fuse/bytes, bind; and fuse/reads over a CVMFS-like store,
// test/cvmfslike, that behaves like a cvmfs2 client whose cache is empty at
// each pull and pays 5 ms per file missed) it runs, alternating overlayfs
// and the variant:
//
//   - open+read of every small file (20 layers of 800 files of 4 KiB):
//     the first run right after the pull (nothing dropped: the store is in
//     the page cache, or, over the CVMFS-like store, every file a miss),
//     cold (caches dropped) and warm (3rd run);
//   - `probe walksum /` (lstat, xattrs, SHA-256 of every file), warm;
//   - container start to exit of `probe echo hi` (wall time of the run);
//   - a sequential read of one large file: first run after the pull,
//     cold and warm;
//   - the pull of a ~1 GiB image in 20 layers, remote vs full.
//
// It then measures the daemon's memory and the latency of remote Prepare
// calls with up to 1,000 layers mounted (fuse/reads and bind). Results go
// to -out: BENCHMARKS.md (a table per workload, medians of repetitions,
// both sides of each ratio from the same run), results.json (every
// sample) and PNG plots; -doc rewrites the section of docs/performance.md
// between <!-- bench:start --> and <!-- bench:end -->.
//
// Run it as root: `make bench`, or `go run ./bench -quick`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// config sizes a run.
type config struct {
	out, readme string
	keep        bool
	quick       bool
	variants    []variant
	prepModes   []variant

	layers, files, fileSize int   // small-file image
	bigSize                 int64 // sequential-read file
	pullLayers              int
	pullSize                int64 // total uncompressed size of the pull image's files
	reps, bigReps, pullReps int
	prepLayers, prepStep    int
	// workloads are the workload ids to run (and "prepare"); nil: all.
	workloads []string
}

// wants reports whether the run includes workload w.
func (c config) wants(w string) bool { return c.workloads == nil || slices.Contains(c.workloads, w) }

// pullFiles is the number of files per layer of the pull image.
func (c config) pullFiles() int {
	return max(1, int(c.pullSize/int64(c.pullLayers)/pullFileSize))
}

// variant is one configuration of the daemon.
type variant struct {
	Name string
	Opts harness.Options
	// Profiles publishes an access profile next to every layer in the
	// repository (all its files), for prefetch to read.
	Profiles bool
	// Doc says what the variant is, for the report.
	Doc string
}

var allVariants = []variant{
	{Name: "fuse/reads", Opts: harness.Options{}, Doc: "the defaults: FUSE, accounting `reads`: no round trip per open, content served by the daemon once"},
	{Name: "fuse/open", Opts: harness.Options{Accounting: "open"}, Doc: "`accounting = \"open\"`: kernel passthrough reads"},
	{Name: "fuse/bytes", Opts: harness.Options{Accounting: "bytes"}, Doc: "`accounting = \"bytes\"`: reads served by the daemon, every open counted"},
	{Name: "bind", Opts: harness.Options{MountMode: "bind"}, Doc: "`mount-mode = \"bind\"`"},
	{Name: pagesVariant, Opts: harness.Options{PrefetchPageCache: true}, Profiles: true, Doc: "an access profile of every file published next to each layer, `prefetch-page-cache = true`"},
	{Name: cvmfsLikeVariant, Opts: harness.Options{CVMFSLike: true, CVMFSMissDelay: cvmfsMissDelay, NoPrefetch: true}, Doc: "over the CVMFS-like store, its cache empty at each pull and 5 ms a miss, `prefetch = false`"},
	{Name: cvmfsLikePrefetchVariant, Opts: harness.Options{CVMFSLike: true, CVMFSMissDelay: cvmfsMissDelay}, Profiles: true, Doc: "over the CVMFS-like store with 5 ms a miss, prefetch with a published profile of every file"},
	{Name: cvmfsLikePagesVariant, Opts: harness.Options{CVMFSLike: true, CVMFSMissDelay: cvmfsMissDelay, PrefetchPageCache: true}, Profiles: true, Doc: "over the CVMFS-like store with 5 ms a miss, a published profile of every file, `prefetch-page-cache = true`"},
	{Name: cvmfsLikeNoDelayVariant, Opts: harness.Options{CVMFSLike: true, NoPrefetch: true}, Doc: "the CVMFS-like store without misses, `prefetch = false`: the floor of the other CVMFS-like variants"},
	{Name: cvmfsLikeDirsVariant, Opts: harness.Options{CVMFSLike: true, CVMFSMissDelay: cvmfsMissDelay, PrefetchDirectories: true}, Doc: "over the CVMFS-like store with 5 ms a miss, no profile, `prefetch-directories = true`"},
}

// variantDoc describes the variant named name.
func variantDoc(name string) string {
	for _, v := range allVariants {
		if v.Name == name {
			return v.Doc
		}
	}
	return "unknown variant"
}

// pagesVariant is fuse/reads with an access profile published next to
// every layer and prefetch-page-cache on: prefetch reads the profiled
// files through the mounts, into the kernel's caches.
const pagesVariant = "fuse/reads+prefetch-pages"

// cvmfsLikeVariant is fuse/reads over a CVMFS-like store (test/cvmfslike)
// instead of a directory: an OPEN per open, no passthrough, and
// cvmfsMissDelay on the first open of each file after each pull.
//
// cvmfsLikeVariant runs without prefetch; cvmfsLikePrefetchVariant with
// prefetch and an access profile published next to every layer (all its
// files); cvmfsLikePagesVariant the same with prefetch-page-cache;
// cvmfsLikeNoDelayVariant without prefetch and with no miss delay, the
// floor the others are measured against; cvmfsLikeDirsVariant with
// prefetch-directories and no profile (a node's first run of an image).
const (
	cvmfsLikeVariant         = "fuse/reads+cvmfs-like"
	cvmfsLikePrefetchVariant = "fuse/reads+cvmfs-like+prefetch"
	cvmfsLikePagesVariant    = "fuse/reads+cvmfs-like+prefetch-pages"
	cvmfsLikeNoDelayVariant  = "fuse/reads+cvmfs-like+0ms"
	cvmfsLikeDirsVariant     = "fuse/reads+cvmfs-like+dirs"
	cvmfsMissDelay           = 5 * time.Millisecond
)

func main() {
	cfg := config{}
	flag.StringVar(&cfg.out, "out", "_build/bench", "results directory (created)")
	flag.StringVar(&cfg.readme, "doc", "", "Markdown page to update between <!-- bench:start --> and <!-- bench:end --> (empty: none; make bench: docs/performance.md)")
	flag.BoolVar(&cfg.quick, "quick", false, "small sizes and few repetitions, for development (a few minutes)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the working directory (logs, repositories)")
	from := flag.String("from", "", "write the report again from the results.json of an earlier run, measuring nothing")
	only := flag.String("variants", "fuse/reads,fuse/open,fuse/bytes,bind,"+pagesVariant+","+cvmfsLikeVariant+","+cvmfsLikePrefetchVariant+","+cvmfsLikePagesVariant+","+cvmfsLikeNoDelayVariant+","+cvmfsLikeDirsVariant, "daemon variants to run, comma-separated")
	wl := flag.String("workloads", "", "workloads to run, comma-separated ids ("+strings.Join(workloadOrder, ",")+",prepare); empty: all")
	flag.IntVar(&cfg.reps, "reps", 0, "repetitions of the small-file, walk and start workloads (0: 2); start runs 3 pairs per repetition")
	flag.Parse()

	cfg.layers, cfg.files, cfg.fileSize = 20, 800, 4<<10
	cfg.bigSize, cfg.pullLayers, cfg.pullSize = 512<<20, 20, 1<<30
	cfg.bigReps, cfg.pullReps = 3, 2
	cfg.prepLayers, cfg.prepStep = 1000, 100
	defReps := 2
	if cfg.quick {
		cfg.files, cfg.bigSize, cfg.pullSize = 100, 64<<20, 128<<20
		cfg.bigReps, cfg.pullReps = 1, 1
		cfg.prepLayers = 200
		defReps = 2
	}
	if cfg.reps <= 0 {
		cfg.reps = defReps
	}
	if *wl != "" {
		cfg.workloads = strings.Split(*wl, ",")
		for _, w := range cfg.workloads {
			if _, ok := workloads[w]; !ok && w != "prepare" {
				fmt.Fprintf(os.Stderr, "benchmark: unknown workload %q\n", w)
				os.Exit(2)
			}
		}
	}
	names := strings.Split(*only, ",")
	for _, v := range allVariants {
		if slices.Contains(names, v.Name) {
			cfg.variants = append(cfg.variants, v)
			if (v.Name == "fuse/reads" || v.Name == "bind") && cfg.wants("prepare") {
				cfg.prepModes = append(cfg.prepModes, v)
			}
		}
	}
	// The variants over the CVMFS-like store run first, in their own
	// environment: the Prepare figures come from the plain directory.
	slices.SortStableFunc(cfg.variants, func(a, b variant) int {
		if a.Opts.CVMFSLike == b.Opts.CVMFSLike {
			return 0
		}
		if a.Opts.CVMFSLike {
			return -1
		}
		return 1
	})
	if len(cfg.variants) == 0 {
		fmt.Fprintf(os.Stderr, "benchmark: no known variant in %q\n", *only)
		os.Exit(2)
	}

	if *from != "" {
		if err := rerender(*from, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "benchmark:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmark:", err)
		os.Exit(1)
	}
}

// started is when the run began; progress lines show the time since.
var started = time.Now()

// progress prints one progress line.
func progress(format string, args ...any) {
	el := time.Since(started).Round(time.Second)
	fmt.Printf("[%02d:%02d] %s\n", int(el.Minutes()), int(el.Seconds())%60, fmt.Sprintf(format, args...))
}

func run(ctx context.Context, cfg config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run me as root: containerd, runc, overlayfs, FUSE and drop_caches need it")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc not found (make deps installs it): %w", err)
	}
	if err := harness.Containerd2Available(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "cvmfs-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		progress("working directory %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}
	rep := &report{Quick: cfg.quick, Machine: machineFacts(), Config: describe(cfg)}
	progress("machine: %s", rep.Machine.summary())

	progress("building the images: %d layers x %d files x %d B; a %d MiB file; a %d MiB pull image in %d layers",
		cfg.layers, cfg.files, cfg.fileSize, cfg.bigSize>>20, cfg.pullSize>>20, cfg.pullLayers)
	probe, err := harness.BuildProbe(work)
	if err != nil {
		return err
	}
	im, err := buildImages(ctx, cfg, probe)
	if err != nil {
		return err
	}
	var env *harness.Env
	closeEnv := func() {
		if env == nil {
			return
		}
		t0 := time.Now()
		if left, err := env.Close(context.WithoutCancel(ctx)); err != nil || len(left) > 0 {
			progress("teardown: %v (left mounted: %v)", err, left)
		}
		progress("torn down in %s", time.Since(t0).Round(time.Millisecond))
		env = nil
	}
	defer closeEnv()
	var refs map[string]string
	for _, v := range cfg.variants {
		if env == nil || env.Options.CVMFSLike != v.Opts.CVMFSLike {
			closeEnv()
			if env, refs, err = startEnv(ctx, cfg, work, v, im); err != nil {
				return err
			}
		}
		res, facts, err := runVariant(ctx, cfg, env, refs, v)
		if err != nil {
			return fmt.Errorf("variant %s: %w", v.Name, err)
		}
		rep.Results = append(rep.Results, res...)
		rep.Passthrough = append(rep.Passthrough, facts)
	}
	if len(cfg.prepModes) > 0 {
		progress("writing %d one-file layers into the repository", cfg.prepLayers)
		layers, chain, err := tinyLayers(ctx, env.Repo, cfg.prepLayers)
		if err != nil {
			return err
		}
		env.Publish()
		for _, v := range cfg.prepModes {
			pr, err := runPrepare(ctx, cfg, env, v, layers, chain)
			if err != nil {
				return fmt.Errorf("prepare, variant %s: %w", v.Name, err)
			}
			rep.Prepare = append(rep.Prepare, pr)
		}
	}
	rep.Machine.LoadEnd = loadAvg()
	rep.Finished = time.Now().UTC()
	rep.Duration = time.Since(started).Round(time.Second)
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	progress("wrote %s/BENCHMARKS.md, results.json and plots", cfg.out)
	if cfg.readme != "" {
		if err := rep.updateReadme(cfg.readme, cfg.out); err != nil {
			return err
		}
		progress("updated the Performance section of %s", cfg.readme)
	}
	fmt.Println()
	fmt.Print(rep.summaryTable())
	return nil
}

// startEnv starts an environment configured as v in a new directory under
// work and loads the images into it. On error nothing is left running.
func startEnv(ctx context.Context, cfg config, work string, v variant, im fixtures) (*harness.Env, map[string]string, error) {
	dir, err := os.MkdirTemp(work, "env-")
	if err != nil {
		return nil, nil, err
	}
	store := "a directory"
	if v.Opts.CVMFSLike {
		store = "a CVMFS-like store"
	}
	progress("starting registry, daemon (%s) over %s, containerd 2 in %s", v.Name, store, dir)
	env, err := harness.New(ctx, dir, v.Opts)
	if err != nil {
		return nil, nil, err
	}
	progress("pushing the images and ingesting them into the repository")
	refs, err := loadImages(ctx, cfg, env, im)
	if err == nil && v.Profiles {
		err = env.PublishProfiles()
	}
	if err != nil {
		env.Close(context.WithoutCancel(ctx))
		return nil, nil, err
	}
	progress("images ready")
	return env, refs, nil
}

// rerender writes the outputs of cfg again from an earlier results.json.
func rerender(path string, cfg config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	if err := rep.write(cfg.out); err != nil {
		return err
	}
	if cfg.readme != "" {
		return rep.updateReadme(cfg.readme, cfg.out)
	}
	return nil
}

// describe names the sizes of a run, for the report.
func describe(cfg config) string {
	return fmt.Sprintf("%d layers x %d files of %d B; sequential read of a %d MiB file; pull of %d MiB in %d layers (%d files of %d KiB per layer); "+
		"%d repetitions (small files, walk, start), %d (sequential read), %d (pull); Prepare of %d layers",
		cfg.layers, cfg.files, cfg.fileSize, cfg.bigSize>>20, int64(cfg.pullLayers*cfg.pullFiles()*pullFileSize)>>20, cfg.pullLayers,
		cfg.pullFiles(), pullFileSize>>10, cfg.reps, cfg.bigReps, cfg.pullReps, cfg.prepLayers)
}
