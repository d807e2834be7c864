//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// TestNoSecondFUSEServer: when nobody serves the socket but the server
// process recorded under the root is alive (say, unmounting on its way
// out), calls fail with ErrUnavailable and no other server is started;
// once it has exited, one is.
func TestNoSecondFUSEServer(t *testing.T) {
	root := t.TempDir()
	// A process whose command line is that of a fuse-server of root.
	if err := os.WriteFile(filepath.Join(root, "fuse-server"), []byte("sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	proc := exec.Command("/bin/sh", "fuse-server", "--root", root)
	proc.Args[0] = "sh"
	proc.Dir = root
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Process.Kill(); proc.Wait() })
	if err := os.WriteFile(PIDFile(root), []byte(strconv.Itoa(proc.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(root, "fuse-server.sock")
	spawned := 0
	rc, err := NewSupervisor(root, sock, []string{"/nonexistent", "fuse-server"})
	if err != nil {
		t.Fatal(err)
	}
	rc.spawn = func(context.Context) (<-chan error, error) { spawned++; return nil, errors.New("not in this test") }
	mp := filepath.Join(root, "snapshots", "1", "fs")
	err = rc.Mount(context.Background(), mp, digest.FromString("l"))
	if !errdefs.IsUnavailable(err) || spawned != 0 {
		t.Fatalf("Mount with the server alive but not serving = %v, %d servers started; want ErrUnavailable and none", err, spawned)
	}

	proc.Process.Kill()
	proc.Wait()
	_ = rc.Mount(context.Background(), mp, digest.FromString("l"))
	if spawned != 1 {
		t.Fatalf("%d servers started once the old one had exited, want 1", spawned)
	}
}

// TestSupervisorStartLogs: a root that has never had a server gets its
// first one with an Info line, not the warning of a server that died; a
// record left by a server that died, or a call that finds the server down,
// is warned about.
func TestSupervisorStartLogs(t *testing.T) {
	cases := []struct {
		name      string
		staleRec  bool // a pid file of a process that is gone
		fromCall  bool // a Mount finds the server down, not Start
		wantLevel logrus.Level
		wantMsg   string
	}{
		{"first start", false, false, logrus.InfoLevel, "no FUSE server runs for this root; starting one"},
		{"start after a crash", true, false, logrus.WarnLevel, "the FUSE server is gone; starting it"},
		{"a call finds it down", false, true, logrus.WarnLevel, "the FUSE server is gone; starting it"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.staleRec {
				// The pid of a process that has exited and been reaped.
				dead := exec.Command("true")
				if err := dead.Run(); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(PIDFile(root), []byte(strconv.Itoa(dead.Process.Pid)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			logger, hook := logtest.NewNullLogger()
			ctx := log.WithLogger(context.Background(), logrus.NewEntry(logger))
			rc, err := NewSupervisor(root, filepath.Join(root, "fuse-server.sock"), []string{"/nonexistent", "fuse-server"})
			if err != nil {
				t.Fatal(err)
			}
			spawned := 0
			rc.spawn = func(context.Context) (<-chan error, error) { spawned++; return nil, errors.New("not in this test") }
			if tc.fromCall {
				err = rc.Mount(ctx, filepath.Join(root, "snapshots", "1", "fs"), digest.FromString("l"))
			} else {
				err = rc.Start(ctx)
			}
			if err == nil || spawned != 1 {
				t.Fatalf("got %v with %d servers started; want the spawn's error after one start", err, spawned)
			}
			var got []string
			for _, e := range hook.AllEntries() {
				got = append(got, e.Level.String()+": "+e.Message)
			}
			want := tc.wantLevel.String() + ": " + tc.wantMsg
			if !slices.Contains(got, want) {
				t.Fatalf("log = %q, want a line %q", got, want)
			}
			for _, e := range hook.AllEntries() {
				if tc.wantLevel == logrus.InfoLevel && e.Level <= logrus.WarnLevel {
					t.Fatalf("a first start logged %s: %q", e.Level, e.Message)
				}
			}
		})
	}
}
