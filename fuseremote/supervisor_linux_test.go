//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
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
