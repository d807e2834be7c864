//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Custodies returns the pids of the custody processes (cvmfs-snapshotter
// custody) whose socket lies under dir.
func Custodies(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 4 || args[1] != "custody" {
			continue
		}
		for i, a := range args[:len(args)-1] {
			if a == "--socket" && strings.HasPrefix(args[i+1], dir+string(filepath.Separator)) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// StopCustodies stops the custody processes whose socket lies under dir
// (see TerminateCustodies), reporting failures through t.
func StopCustodies(t testing.TB, dir string) {
	t.Helper()
	if err := TerminateCustodies(dir); err != nil {
		t.Error(err)
	}
}

// TerminateCustodies stops the custody processes whose socket lies under
// dir: SIGTERM (a custody with no daemon connected then unmounts what it
// keeps), SIGKILL after 10 s, which is reported as an error.
func TerminateCustodies(dir string) error {
	var errs []error
	for _, pid := range Custodies(dir) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for processRuns(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processRuns(pid) {
			errs = append(errs, fmt.Errorf("custody %d ignored SIGTERM for 10s; killed", pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return errors.Join(errs...)
}

// processRuns reports whether pid exists and is not a zombie.
func processRuns(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
