package harness

import (
	"fmt"
	"os/exec"
	"regexp"
)

// DaemonDefaults are the defaults of cvmfs-snapshotter's flags, as its
// --help prints them: deployment files are checked against these, not
// against copies of them.
type DaemonDefaults struct {
	// Address is the default gRPC socket (--address).
	Address string
	// Root is the default state directory (--root).
	Root string
}

// defaultFlag matches a flag line of the daemon's --help.
var defaultFlag = regexp.MustCompile(`(?m)^\s+--(address|root)\s.*\(default "([^"]+)"\)$`)

// Defaults runs the daemon's --help and returns the defaults it prints.
func Defaults() (DaemonDefaults, error) {
	bin, err := Binary("cvmfs-snapshotter")
	if err != nil {
		return DaemonDefaults{}, err
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil {
		return DaemonDefaults{}, fmt.Errorf("cvmfs-snapshotter --help: %w\n%s", err, out)
	}
	var d DaemonDefaults
	for _, m := range defaultFlag.FindAllStringSubmatch(string(out), -1) {
		switch m[1] {
		case "address":
			d.Address = m[2]
		case "root":
			d.Root = m[2]
		}
	}
	if d.Address == "" || d.Root == "" {
		return DaemonDefaults{}, fmt.Errorf("no default --address or --root in cvmfs-snapshotter --help:\n%s", out)
	}
	return d, nil
}
