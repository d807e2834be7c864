package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/adminapi"
)

// daemonFlags are the flags of every subcommand that asks the daemon:
// where its admin endpoint is, and JSON output.
type daemonFlags struct {
	address string
	json    bool
}

func (d *daemonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.address, "address", "unix://"+defaultAdminSocket, "the daemon's admin socket (unix:///path) or a metrics-address (host:port)")
	fs.BoolVar(&d.json, "json", false, "print the daemon's answer as JSON")
}

// client returns a client of the daemon's admin API at --address.
func (d *daemonFlags) client() (*adminapi.Client, error) { return adminapi.NewClient(d.address) }

// daemonError returns err with the daemon's message (it may name files
// and images) fit for a terminal.
func daemonError(err error) error {
	var se *adminapi.StatusError
	if errors.As(err, &se) {
		return fmt.Errorf("GET %s: %s: %s", se.URL, se.Status, display(se.Message))
	}
	return err
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// positional parses flags that may come before or after the positional
// arguments, and returns those.
func positional(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// percent returns part/whole as a percentage, 0 when whole is 0.
func percent(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// shortDigest returns the first 12 hex digits of a digest string.
func shortDigest(d string) string {
	if len(d) > len("sha256:")+12 {
		return display(d[len("sha256:") : len("sha256:")+12])
	}
	if d == "" {
		return "(no digest)"
	}
	return display(d)
}

// errArgs returns the error of a command given bad arguments.
func errArgs(cmd, format string, a ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{cmd}, a...)...)
}
