//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// A test binary started with fakeServerEnv set only sleeps: a process of
// any command line the test likes.
const fakeServerEnv = "FUSEREMOTE_TEST_SLEEPER"

func init() {
	if os.Getenv(fakeServerEnv) == "1" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
}

// TestPIDReuseByAnotherUser: a process of another user that got the pid
// recorded by a dead server, with the command line of a server of this
// root (any user can choose its argv), is not taken for the server: it
// would stop the server from ever being started again.
func TestPIDReuseByAnotherUser(t *testing.T) {
	testutil.RequiresRoot(t)
	root := t.TempDir()
	const nobody = 65534
	// The test binary, where nobody can run it.
	dir, err := os.MkdirTemp("", "pidreuse")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sleeper")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	src.Close()
	dst.Close()

	command := []string{"/usr/bin/cvmfs-snapshotter", "fuse-server", "--root", root}
	impostor := &exec.Cmd{
		Path:        bin,
		Args:        command,
		Env:         []string{fakeServerEnv + "=1"},
		SysProcAttr: &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, NoSetGroups: true}},
	}
	if err := impostor.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { impostor.Process.Kill(); impostor.Wait() }()
	if err := os.WriteFile(PIDFile(root), []byte(strconv.Itoa(impostor.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Its command line is in place once it runs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(impostor.Process.Pid), "cmdline"))
		if len(b) > 0 && string(b[:len(command[0])]) == command[0] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("impostor cmdline %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}

	rc, err := NewSupervisor(root, filepath.Join(root, "fuse-server.sock"), command)
	if err != nil {
		t.Fatal(err)
	}
	spawned := 0
	rc.spawn = func(context.Context) (<-chan error, error) { spawned++; return nil, errors.New("not in this test") }
	err = rc.Start(context.Background())
	if spawned != 1 {
		t.Fatalf("Start = %v with %d servers started; want the impostor ignored and a server started", err, spawned)
	}
}
