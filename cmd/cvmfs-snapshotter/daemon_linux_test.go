//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// buildDaemon builds this command once per test binary run.
func buildDaemon(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("CVMFS_TEST_BIN"); bin != "" {
		if p := filepath.Join(bin, "cvmfs-snapshotter"); fileExists(p) {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "cvmfs-snapshotter")
	cmd := exec.Command("go", "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

type daemon struct {
	cmd  *exec.Cmd
	sock string
	root string
	log  *os.File
}

func startDaemon(t *testing.T, bin, dir, configTOML string) *daemon {
	t.Helper()
	d := startDaemonNoWait(t, bin, dir, configTOML)
	waitSocket(t, d)
	return d
}

// startDaemonNoWait starts the daemon without waiting for its socket.
func startDaemonNoWait(t *testing.T, bin, dir, configTOML string) *daemon {
	t.Helper()
	d := &daemon{sock: filepath.Join(dir, "run", "snap.sock"), root: filepath.Join(dir, "root")}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(configTOML), 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	d.log, err = os.OpenFile(filepath.Join(dir, "daemon.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(bin, "--address", d.sock, "--root", d.root, "--config", cfg, "--log-level", "debug")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// However the test ends, the daemon does not outlive it.
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			d.cmd.Process.Kill()
			d.cmd.Wait()
		}
	})
	return d
}

// waitSocket waits for d to answer on its socket.
func waitSocket(t *testing.T, d *daemon) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !canDial(d.sock) {
		if time.Now().After(deadline) {
			d.cmd.Process.Kill()
			d.cmd.Wait()
			t.Fatalf("daemon did not create its socket; log:\n%s", readFile(d.log.Name()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// canDial reports whether something accepts connections on the socket (a
// socket file alone may be a stale one left by a killed daemon).
func canDial(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

func (d *daemon) client(t *testing.T) snapshots.Snapshotter {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), "cvmfs-snapshotter")
}

func (d *daemon) stop(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-done
		t.Fatal("daemon did not stop within 30s of SIGTERM")
	}
	d.log.Close()
}

func layerDigest(s string) digest.Digest { return digest.FromString(s) }

// wantKept is how many mounts of each remote layer a daemon of mode leaves
// when it stops: its FUSE mounts, kept by the custody.
func wantKept(mode string) int {
	if mode == config.ModeFUSE {
		return 1
	}
	return 0
}

// TestDaemon drives the built daemon over its gRPC socket, in both mount
// modes: a remote hit, a fallback, malformed labels, SIGTERM keeping
// snapshots (and, in FUSE mode, the mounts), a restart restoring them, a
// kill -9 and a restart.
func TestDaemon(t *testing.T) {
	eachMountMode(t, func(t *testing.T, bin, mode, dir string) {
		repo := filepath.Join(dir, "repo")
		present := layerDigest("present")
		ducctest.WriteLayer(t, repo, present, map[string]string{"bin/tool": "tool"}, 4)
		// The chains of the layer alone and of the layer twice.
		chain1 := ducctest.DiffID(present).String()
		chain2 := identity.ChainID([]digest.Digest{ducctest.DiffID(present), ducctest.DiffID(present)}).String()
		cfg := fmt.Sprintf("absolute-mountpoint = %q\nmount-mode = %q\nlookup-timeout = \"2s\"\n", repo, mode)
		d := startDaemon(t, bin, dir, cfg)
		sn := d.client(t)
		ctx := context.Background()

		if fi, err := os.Stat(d.sock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("socket mode: %v, %v", fi.Mode(), err)
		}
		labels := func(target string, layer string) snapshots.Opt {
			return snapshots.WithLabels(map[string]string{
				"containerd.io/snapshot.ref":              target,
				"containerd.io/snapshot/cri.layer-digest": layer,
			})
		}
		_, err := sn.Prepare(ctx, "extract-1 chain-1", "", labels(chain1, present.String()))
		if !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare of a present layer = %v, want AlreadyExists", err)
		}
		info, err := sn.Stat(ctx, chain1)
		if err != nil || info.Labels[snapshot.LabelRemote] != present.String() {
			t.Fatalf("Stat target = %+v, %v", info, err)
		}
		mps, _ := mountutil.Under(d.root)
		if len(mps) != 1 || readFile(filepath.Join(mps[0].Mountpoint, "bin", "tool")) != "tool" {
			t.Fatalf("layer files not visible at the snapshot mount: %+v", mps)
		}
		// Absent layer and malformed digests: writable mounts, no panic.
		for i, layer := range []string{layerDigest("absent").String(), "sha256:../../etc", "", "sha512:" + strings.Repeat("a", 128)} {
			ms, err := sn.Prepare(ctx, fmt.Sprintf("extract-x%d", i), "", labels(fmt.Sprintf("chain-x%d", i), layer))
			if err != nil || len(ms) != 1 {
				t.Fatalf("Prepare(%q) = %+v, %v; want a fallback", layer, ms, err)
			}
		}
		if _, err := sn.Stat(ctx, chain1); err != nil {
			t.Fatalf("daemon stopped answering: %v", err)
		}

		d.stop(t)
		// Bind mounts go with the daemon; FUSE mounts stay, kept by
		// the custody, for the next daemon to serve.
		if mps, _ := mountutil.Under(d.root); len(mps) != wantKept(mode) {
			t.Fatalf("mounts after SIGTERM: %+v, want %d", mps, wantKept(mode))
		}
		if !fileExists(filepath.Join(d.root, "metadata.db")) {
			t.Fatal("metadata deleted at shutdown")
		}

		d = startDaemon(t, bin, dir, cfg)
		sn = d.client(t)
		if _, err := sn.Stat(ctx, chain1); err != nil {
			t.Fatalf("snapshot lost across restart: %v", err)
		}
		var infos []snapshots.Info
		if err := sn.Walk(ctx, func(ctx context.Context, i snapshots.Info) error { infos = append(infos, i); return nil }); err != nil || len(infos) != 5 {
			b, _ := json.Marshal(infos)
			t.Fatalf("Walk after restart: %s, %v", b, err)
		}
		mps, _ = mountutil.Under(d.root)
		if len(mps) != 1 || readFile(filepath.Join(mps[0].Mountpoint, "bin", "tool")) != "tool" {
			t.Fatalf("remote mount not restored: %+v", mps)
		}
		checkMalformedRequests(t, sn, chain1)

		// Crash: kill -9 leaves the mount behind. A bind mount needs
		// no server; a FUSE mount's requests wait in the kernel
		// (the custody holds its connection) for the next daemon,
		// which takes it over.
		mp := mps[0].Mountpoint
		if err := d.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		d.cmd.Wait()
		d.log.Close()
		d = startDaemon(t, bin, dir, cfg)
		if mode == config.ModeFUSE && !strings.Contains(readFile(filepath.Join(dir, "daemon.log")), "layer mount taken over") {
			t.Fatalf("the FUSE mount was not taken over after a kill; log:\n%s", readFile(filepath.Join(dir, "daemon.log")))
		}
		sn = d.client(t)
		if got := readFile(filepath.Join(mp, "bin", "tool")); got != "tool" {
			t.Fatalf("layer not re-mounted after a crash: %q", got)
		}
		if mps, _ := mountutil.Under(d.root); len(mps) != 1 {
			t.Fatalf("after crash and restart, mounts = %+v, want exactly 1", mps)
		}
		if _, err := sn.Prepare(ctx, "extract-2 chain-2", chain1, labels(chain2, present.String())); !errdefs.IsAlreadyExists(err) {
			t.Fatalf("Prepare after crash = %v", err)
		}
		d.stop(t)
		if mps, _ := mountutil.Under(d.root); len(mps) != 2*wantKept(mode) {
			t.Fatalf("mounts after the final SIGTERM: %+v, want %d", mps, 2*wantKept(mode))
		}
		// Stopping the custody with no daemon running unmounts
		// what it keeps.
		testutil.StopCustodies(t, dir)
		if mps, _ := mountutil.Under(d.root); len(mps) != 0 {
			t.Fatalf("mounts left after the daemon and its custody stopped: %+v", mps)
		}
	})
}

// eachMountMode runs test as root in a subtest per mount mode (bind,
// FUSE), with the built daemon bin and a directory dir whose mounts are
// swept at the end.
func eachMountMode(t *testing.T, test func(t *testing.T, bin, mode, dir string)) {
	testutil.RequiresRoot(t)
	bin := buildDaemon(t)
	for _, mode := range []string{config.ModeBind, config.ModeFUSE} {
		t.Run(mode, func(t *testing.T) {
			if mode == config.ModeFUSE {
				testutil.RequiresFUSE(t)
			}
			dir := t.TempDir()
			t.Cleanup(func() { testutil.SweepMounts(t, dir) })
			test(t, bin, mode, dir)
		})
	}
}

// checkMalformedRequests sends bad requests over gRPC: each is answered
// with the right errdefs class (converted back by the client), never a
// crash, and the daemon keeps serving.
func checkMalformedRequests(t *testing.T, sn snapshots.Snapshotter, chain1 string) {
	t.Helper()
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "active-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "child-of-1", chain1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
		is   func(error) bool
	}{
		{"stat unknown key", func() error { _, err := sn.Stat(ctx, "no-such-key"); return err }, errdefs.IsNotFound},
		{"prepare with a missing parent", func() error { _, err := sn.Prepare(ctx, "k", "no-such-parent"); return err }, errdefs.IsNotFound},
		{"prepare a duplicate key", func() error { _, err := sn.Prepare(ctx, "active-1", ""); return err }, errdefs.IsAlreadyExists},
		{"remove a parent with children", func() error { return sn.Remove(ctx, chain1) }, errdefs.IsFailedPrecondition},
		{"commit a non-active snapshot", func() error { return sn.Commit(ctx, "again", chain1) }, errdefs.IsFailedPrecondition},
		{"commit an unknown key", func() error { return sn.Commit(ctx, "again", "no-such-key") }, errdefs.IsNotFound},
		{"mounts of an unknown key", func() error { _, err := sn.Mounts(ctx, "no-such-key"); return err }, errdefs.IsNotFound},
		{"empty key", func() error { _, err := sn.Prepare(ctx, "", ""); return err }, func(err error) bool { return err != nil }},
	} {
		if err := tc.call(); !tc.is(err) {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
	if _, err := sn.Prepare(ctx, "child-2-of-1", chain1); err != nil {
		t.Fatalf("daemon unusable after bad requests: %v", err)
	}
}

// TestDaemonSecondOnSameRoot: a second daemon on a root in use exits at
// once, non-zero, naming the root and the first daemon's pid, instead of
// waiting forever on the metadata database.
func TestDaemonSecondOnSameRoot(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, dir) })
	cfg := fmt.Sprintf("absolute-mountpoint = %q\nmount-mode = \"bind\"\n", filepath.Join(dir, "repo"))
	first := startDaemon(t, bin, dir, cfg)

	second := exec.Command(bin, "--address", filepath.Join(dir, "run", "second.sock"), "--root", first.root,
		"--config", filepath.Join(dir, "config.toml"))
	var out strings.Builder
	second.Stdout, second.Stderr = &out, &out
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("second daemon on the same root: exit %v, want non-zero; output:\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		second.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			second.Process.Kill()
			<-done
			t.Errorf("second daemon also ignored SIGTERM")
		}
		t.Fatalf("second daemon on the same root still running after 10s; output:\n%s", out.String())
	}
	for _, want := range []string{first.root, fmt.Sprintf("pid %d", first.cmd.Process.Pid)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("second daemon's error does not mention %q:\n%s", want, out.String())
		}
	}
	// The first one is unharmed.
	if !canDial(first.sock) {
		t.Fatal("first daemon stopped answering")
	}
	first.stop(t)
}
