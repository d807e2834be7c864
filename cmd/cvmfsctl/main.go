package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/docker/go-units"
)

// command is one cvmfsctl subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = []command{
	{"ingest", "write an image's layers into a directory in DUCC's layout", runIngest},
	{"pull", "pull an image through containerd with remote-snapshot labels", runPull},
	{"stats", "show the daemon's per-layer accounting of the layers mounted now", runStats},
	{"profile", "show the files read in a LAYER or each layer of an IMAGE, across daemon restarts", runProfile},
	{"report", "show, per layer of IMAGEs, the share of files and bytes read; chart it", runReport},
	{"missing", "list the images not fully served from CVMFS, most pulled first (--ducc: as a wish list)", runMissing},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cvmfsctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(os.Stderr)
		return flag.ErrHelp
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout)
		}
	}
	printUsage(os.Stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: cvmfsctl COMMAND [flags] [IMAGE]")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "run 'cvmfsctl COMMAND -h' for its flags")
}

// parse parses flags that may come before or after the single positional
// IMAGE argument, and returns IMAGE.
func parse(fs *flag.FlagSet, args []string) (string, error) {
	fs.SetOutput(os.Stderr)
	pos, err := positional(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		fs.Usage()
		return "", fmt.Errorf("%s: want exactly one IMAGE, got %d", fs.Name(), len(pos))
	}
	return pos[0], nil
}

// humanBytes formats n in binary units, e.g. "1.5MiB".
func humanBytes(n int64) string { return units.BytesSize(float64(n)) }
