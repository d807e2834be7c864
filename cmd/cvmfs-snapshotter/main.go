package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/containerd/log"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultAddress = "/run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock"
	defaultRoot    = "/var/lib/containerd-cvmfs-grpc"
	// maxThreads replaces Go's limit of 10,000 OS threads, past which the
	// runtime ends the process. Every mounted layer's FUSE server keeps a
	// thread blocked reading /dev/fuse, and more while busy (1 to 3 a
	// layer measured here): a node with thousands of layers mounted would
	// reach the default. The kernel's own limits (pid_max, threads-max)
	// still apply.
	maxThreads = 100_000
)

type flags struct {
	address  string
	config   string
	logLevel string
	root     string
	version  bool
}

func parseFlags(args []string, out io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("cvmfs-snapshotter", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.address, "address", defaultAddress, "address (unix socket) for the snapshotter's gRPC server")
	fs.StringVar(&f.config, "config", "", "path to the TOML configuration file")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&f.root, "root", defaultRoot, "directory for the snapshotter's metadata and snapshots")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: cvmfs-snapshotter [flags]\n       cvmfs-snapshotter fuse-server --socket PATH [--config FILE] (started by the daemon when fuse-server = \"separate\")\n       cvmfs-snapshotter custody --socket PATH (keeps the layers' FUSE connections across restarts; started by the daemon)\n       cvmfs-snapshotter prefetch-reader [--workers N] (reads prefetched files through the layer mounts; started by the daemon when prefetch-page-cache = true)\n\nA containerd remote snapshotter serving image layers from CVMFS.\n\nFlags:\n")
		fs.VisitAll(func(fl *flag.Flag) {
			def := ""
			if fl.DefValue != "" && fl.DefValue != "false" {
				def = fmt.Sprintf(" (default %q)", fl.DefValue)
			}
			fmt.Fprintf(out, "  --%-10s %s%s\n", fl.Name, fl.Usage, def)
		})
	}
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return f, nil
}

func main() {
	debug.SetMaxThreads(maxThreads)
	if len(os.Args) > 1 && os.Args[1] == fuseServerName {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		if err := runFUSEServer(ctx, os.Args[2:], os.Stderr); err != nil {
			log.G(ctx).WithError(err).Error("cvmfs-snapshotter fuse-server failed")
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == pageReaderName {
		signal.Ignore(syscall.SIGHUP, syscall.SIGINT)
		if err := runPageReader(os.Args[2:], os.Stderr); err != nil {
			log.L.WithError(err).Error("cvmfs-snapshotter prefetch-reader failed")
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == custodyName {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
		if err := runCustody(ctx, os.Args[2:], os.Stderr); err != nil {
			log.G(ctx).WithError(err).Error("cvmfs-snapshotter custody failed")
			os.Exit(1)
		}
		return
	}
	f, err := parseFlags(os.Args[1:], os.Stderr)
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		os.Exit(2)
	}
	if f.version {
		fmt.Fprintln(os.Stdout, "cvmfs-snapshotter", version)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, f); err != nil {
		log.G(ctx).WithError(err).Error("cvmfs-snapshotter failed")
		os.Exit(1)
	}
}
