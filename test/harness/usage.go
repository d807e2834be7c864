package harness

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// AdminSocket is the daemon's admin socket (its default, under its root).
func (e *Env) AdminSocket() string {
	return filepath.Join(e.Dir, "snapshotter", "admin.sock")
}

// UsageDir is where the daemon keeps its usage records.
func (e *Env) UsageDir() string {
	return filepath.Join(e.Dir, "snapshotter", "usage")
}

// Cvmfsctl runs a cvmfsctl command that asks the daemon (stats, profile,
// report, missing) against its admin socket, and returns its standard
// output.
func (e *Env) Cvmfsctl(ctx context.Context, command string, args ...string) ([]byte, error) {
	bin, err := Binary("cvmfsctl")
	if err != nil {
		return nil, err
	}
	argv := append([]string{command, "--address", "unix://" + e.AdminSocket()}, args...)
	cmd := exec.CommandContext(ctx, bin, argv...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return out, fmt.Errorf("cvmfsctl %v: %w: %s", argv, err, ee.Stderr)
		}
		return out, fmt.Errorf("cvmfsctl %v: %w", argv, err)
	}
	return out, nil
}
