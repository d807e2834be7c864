//go:build linux

package custody

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
)

// startServe runs Serve on a socket in a temporary directory until the
// test ends.
func startServe(t *testing.T, opts ...Opt) (string, <-chan error) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "custody.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, sock, opts...) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for NewClient(sock).Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatal("custody does not answer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return sock, done
}

// memfd returns an anonymous file holding s.
func memfd(t *testing.T, s string) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("custody-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestKeepListRelease: what is kept is listed back with descriptors of the
// same files; a kept ID kept again is replaced; a released one is gone.
func TestKeepListRelease(t *testing.T) {
	sock, _ := startServe(t)
	ctx := context.Background()
	cl := NewClient(sock)
	defer cl.Close()
	conn := func(id, dev, nodes string) fusefs.Connection {
		return fusefs.Connection{
			ID: id, Mountpoint: "/mnt/" + id, Layer: digest.FromString(id),
			Device: memfd(t, dev), Nodes: memfd(t, nodes), Init: []byte("init"), InitReply: []byte("reply"),
		}
	}
	for _, c := range []fusefs.Connection{conn("a", "dev-a", "nodes-a"), conn("b", "dev-b", "nodes-b"), conn("a", "dev-a2", "nodes-a2")} {
		if err := cl.Keep(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Release(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	got, err := cl.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range got {
			c.Close()
		}
	}()
	if len(got) != 1 || got[0].ID != "a" || got[0].Mountpoint != "/mnt/a" || string(got[0].Init) != "init" || string(got[0].InitReply) != "reply" {
		t.Fatalf("list = %+v, want connection a only", got)
	}
	for f, want := range map[*os.File]string{got[0].Device: "dev-a2", got[0].Nodes: "nodes-a2"} {
		b := make([]byte, 16)
		n, _ := f.ReadAt(b, 0)
		if string(b[:n]) != want {
			t.Errorf("passed descriptor reads %q, want %q", b[:n], want)
		}
	}
}

// TestMalformedRequests: requests that are not JSON, of another protocol
// version, of an unknown operation, or a keep without its descriptors or
// with a bad record get an error or a hang-up, and the custody goes on.
func TestMalformedRequests(t *testing.T) {
	sock, _ := startServe(t)
	for _, raw := range []string{
		"not json",
		`{"v":2,"op":"ping"}`,
		`{"v":1,"op":"format-disk"}`,
		`{"v":1,"op":"keep","conn":{"id":"x","mountpoint":"/m","layer":"sha256:zz","init":"aQ==","init-reply":"aQ=="}}`,
		`{"v":1,"op":"keep"}`,
		strings.Repeat("x", maxMessage+10),
	} {
		c, err := net.Dial("unixpacket", sock)
		if err != nil {
			t.Fatal(err)
		}
		uc := c.(*net.UnixConn)
		uc.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := uc.Write([]byte(raw)); err != nil {
			t.Fatal(err)
		}
		r, files, err := receive(uc)
		closeAll(files)
		if err == nil && r.Err == "" {
			t.Errorf("request %.40q answered without an error: %+v", raw, r)
		}
		c.Close()
	}
	if err := NewClient(sock).Ping(context.Background()); err != nil {
		t.Fatalf("custody stopped answering: %v", err)
	}
	if l, err := NewClient(sock).List(context.Background()); err != nil || len(l) != 0 {
		t.Fatalf("list after bad requests: %+v, %v; want nothing kept", l, err)
	}
}

// TestOnlyOneCustody: a second custody on a socket someone serves refuses
// to start instead of taking it over.
func TestOnlyOneCustody(t *testing.T) {
	sock, _ := startServe(t)
	err := Serve(context.Background(), sock)
	if err == nil || !strings.Contains(err.Error(), "already listens") {
		t.Fatalf("second Serve = %v, want a refusal", err)
	}
}

// TestOtherUserRefused: a peer of another uid that reaches the socket (its
// directory and mode opened up on purpose) gets no answer.
func TestOtherUserRefused(t *testing.T) {
	if os.Getenv("CUSTODY_TEST_PING") != "" {
		// The child: ping as another user and report.
		if err := NewClient(os.Getenv("CUSTODY_TEST_PING")).Ping(context.Background()); err == nil {
			os.Exit(3)
		}
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a peer as another user")
	}
	sock, _ := startServe(t)
	for _, p := range []string{filepath.Dir(filepath.Dir(sock)), filepath.Dir(sock)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	// The test binary, where the other user can run it.
	bin := filepath.Join(filepath.Dir(sock), "custody.test")
	data, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestOtherUserRefused$")
	cmd.Env = append(os.Environ(), "CUSTODY_TEST_PING="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 3 {
		t.Fatalf("a peer of uid 65534 was answered")
	}
	if err != nil {
		t.Fatalf("peer as uid 65534: %v\n%s", err, out)
	}
}
