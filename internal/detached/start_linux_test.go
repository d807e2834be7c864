//go:build linux

package detached

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestStart: the process runs in a session of its own, in "/", its output
// appended to the log, and its exit status is reported.
func TestStart(t *testing.T) {
	log := filepath.Join(t.TempDir(), "out.log")
	if err := os.WriteFile(log, []byte("before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pid, exited, err := Start([]string{"/bin/sh", "-c", "pwd; exit 3"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if sid, err := unix.Getsid(pid); err == nil && sid != pid {
		t.Errorf("session %d, want its own (%d)", sid, pid)
	}
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("exit = %v, want exit status 3", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported")
	}
	if b, _ := os.ReadFile(log); string(b) != "before\n/\n" {
		t.Errorf("log %q, want the output appended, run in /", b)
	}
	if _, _, err := Start(nil, log); err == nil {
		t.Error("an empty command started")
	}
}
