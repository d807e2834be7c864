package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether CI=true: every skip then becomes a failure, so that a
// CI run cannot pass by skipping what it was meant to prove.
func InCI() bool { return os.Getenv("CI") == "true" }

// Skip skips t with the reason, or fails it when running in CI (unless
// UnitOnly).
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() && !UnitOnly() {
		t.Fatalf("CI=true and a requirement is missing: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequiresRoot skips t (fails it in CI) unless running as root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (running as uid %d)", os.Geteuid())
	}
}

// RequiresFUSE skips t (fails it in CI) unless /dev/fuse can be opened.
func RequiresFUSE(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		Skip(t, "needs /dev/fuse: %v", err)
		return
	}
	f.Close()
}

// RequiresBinary skips t (fails it in CI) unless name is found on PATH or
// is an executable path, and returns its path.
func RequiresBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "needs %s: %v", name, err)
	}
	return p
}

// UnitOnly reports whether CVMFS_UNIT_ONLY is set (make unit): tests that
// need root, FUSE or containerd skip without failing, even in CI.
func UnitOnly() bool { return os.Getenv("CVMFS_UNIT_ONLY") != "" }
