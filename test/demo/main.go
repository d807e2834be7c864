package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

func main() {
	keep := flag.Bool("keep", false, "keep the temporary directory (logs, repository) after teardown")
	reportDir := flag.String("report-dir", filepath.Join("_build", "demo"), "where to write the usage report's chart (report.png) and page (report.html)")
	accounting := flag.String("accounting", "reads", `daemon accounting: "reads" (the default: no round trip per open, files read and exact bytes), "bytes" (every open and exact bytes) or "open" (kernel passthrough, counts opens)`)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, *keep, *accounting, *reportDir)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, keep bool, accounting, reportDir string) (err error) {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run me as root: containerd, runc, overlayfs and FUSE need it")
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return fmt.Errorf("runc not found (make deps installs it): %w", err)
	}
	flavour := harness.Containerd2
	if err := harness.Containerd2Available(); err != nil {
		if err16 := harness.Containerd16Available(); err16 != nil {
			return fmt.Errorf("no containerd: %v; %v (make deps installs both)", err, err16)
		}
		fmt.Fprintf(out, "note: %v; using containerd 1.6\n", err)
		flavour = harness.Containerd16
	}
	dir, err := os.MkdirTemp("", "cvmfs-demo-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	step := stepper(out)
	fmt.Fprintf(out, "cvmfs-snapshotter demo: everything local, in %s\n\n", dir)

	step("building the test images (a static probe binary as the base layer, a 16 MiB library layer, a 4 MiB app layer)")
	probe, err := harness.BuildProbe(dir)
	if err != nil {
		return err
	}
	baseLayer := harness.BaseLayer(probe)
	lib := harness.AppLayers(64, 256<<10)[0]
	app := harness.AppLayers(16, 256<<10)[1]

	step("starting the registry, cvmfs-snapshotter (accounting %q) and %s", accounting, flavour)
	env, err := harness.New(ctx, dir, harness.Options{Containerd: flavour, Metrics: true, Accounting: accounting})
	if err != nil {
		return err
	}
	defer func() {
		step("tearing down: containers, containerd, cvmfs-snapshotter and its custody (which unmounts the layers), registry")
		left, cerr := env.Close(context.WithoutCancel(ctx))
		if cerr != nil && err == nil {
			err = cerr
		}
		if len(left) > 0 {
			fmt.Fprintf(out, "  mounts left behind (now lazily unmounted): %v\n", left)
		} else {
			fmt.Fprintf(out, "  no mounts left under %s\n", dir)
		}
		if keep {
			fmt.Fprintf(out, "  kept %s (logs: snapshotter.log, containerd.log)\n", dir)
		}
	}()
	runtimeImg, err := harness.Image(baseLayer, lib)
	if err != nil {
		return err
	}
	appImg, err := harness.Image(baseLayer, lib, app)
	if err != nil {
		return err
	}
	runtimeRef, err := env.Registry.Push("demo/runtime", "1.0", runtimeImg)
	if err != nil {
		return err
	}
	appRef, err := env.Registry.Push("demo/app", "1.0", appImg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  registry %s serves %s (2 layers) and %s (the same 2 + 1)\n", env.Registry.Host(), runtimeRef, appRef)

	step("publishing %s into the local layer store with cvmfsctl ingest (DUCC layout)", runtimeRef)
	ingestOut, err := env.Ingest(ctx, runtimeRef)
	if err != nil {
		return err
	}
	fmt.Fprint(out, indent(ingestOut))
	env.Registry.Reset()

	step("pulling %s with cvmfsctl pull", appRef)
	ns := harness.Unique("demo")
	ctx = env.UseNamespace(ctx, ns)
	if err := cvmfsctl(ctx, out, "pull", appRef, "--address", env.ContainerdSock, "--namespace", ns, "--snapshotter", harness.SnapshotterName); err != nil {
		return err
	}
	img, err := env.Client.GetImage(ctx, appRef)
	if err != nil {
		return err
	}

	args := []string{harness.ProbePath, "cat"}
	for i := range 8 {
		args = append(args, fmt.Sprintf("/lib/file-%03d", i))
	}
	args = append(args, "/app/file-000", "/app/file-001")
	step("running a container: %s", shortArgs(args))
	start := time.Now()
	res, err := env.Run(ctx, img, harness.RunOptions{}, args...)
	if err != nil {
		return fmt.Errorf("container: %w\n%s", err, res.Stderr)
	}
	fmt.Fprintf(out, "  container said: %s  (ran in %s)\n", trim(res.Stdout), time.Since(start).Round(time.Millisecond))

	step("where each layer came from, and what the container read")
	rows, err := table(ctx, env, img)
	if err != nil {
		return err
	}
	printTable(out, rows, accounting)

	step("the usage report: which share of each layer the container read (cvmfsctl report, from the records kept under the daemon's root)")
	return report(ctx, out, env, appRef, reportDir)
}

// report prints cvmfsctl report's table for ref and writes its chart and
// page into dir, printing their paths.
func report(ctx context.Context, out io.Writer, env *harness.Env, ref, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	chart, page := filepath.Join(dir, "report.png"), filepath.Join(dir, "report.html")
	table, err := env.Cvmfsctl(ctx, "report", ref, "--png", chart, "--html", page)
	if err != nil {
		return err
	}
	fmt.Fprint(out, indent(string(table)))
	fmt.Fprintf(out, "  chart: %s\n  page:  %s\n", chart, page)
	return nil
}

// cvmfsctl runs the cvmfsctl binary with its output going to out live.
func cvmfsctl(ctx context.Context, out io.Writer, args ...string) error {
	bin, err := harness.Binary("cvmfsctl")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	pw := &prefixWriter{w: out, prefix: "  ", bol: true}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", filepath.Base(bin), args[0], err)
	}
	return nil
}
