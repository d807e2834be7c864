//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestSeparateFUSEServer: with fuse-server = "separate" the layer mounts
// live in a detached process. A "container" (an overlay on a remote layer)
// keeps reading, with fresh opens, while the daemon is stopped, killed and
// restarted; the restarted daemon re-attaches and keeps the mounts.
func TestSeparateFUSEServer(t *testing.T) {
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	bin := buildDaemon(t)
	dir := t.TempDir()
	t.Cleanup(func() { testutil.SweepMounts(t, dir) })
	ctx := context.Background()

	repo := filepath.Join(dir, "repo")
	present := layerDigest("separate")
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("f%02d", i)] = "data"
	}
	ducctest.WriteLayer(t, repo, present, files, 200)
	chain1 := ducctest.DiffID(present).String()
	sock := filepath.Join(dir, "fuse.sock")
	cfg := fmt.Sprintf("absolute-mountpoint = %q\nfuse-server = \"separate\"\nfuse-server-socket = %q\n", repo, sock)
	server := fuseremote.NewClient(sock)
	t.Cleanup(func() { _ = server.Shutdown(context.Background()) })

	d := startDaemon(t, bin, dir, cfg)
	sn := d.client(t)
	_, err := sn.Prepare(ctx, "extract-1 chain-1", "", snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref":              chain1,
		"containerd.io/snapshot/cri.layer-digest": present.String(),
	}))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare = %v", err)
	}
	ms, err := sn.Prepare(ctx, "container", chain1)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, rootfs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mount.UnmountAll(rootfs, syscall.MNT_DETACH) })

	next := 0
	readFresh := func(when string) {
		t.Helper()
		// A file never opened before: the open reaches the FUSE server.
		name := filepath.Join(rootfs, fmt.Sprintf("f%02d", next))
		next++
		if b, err := os.ReadFile(name); err != nil || string(b) != "data" {
			t.Fatalf("%s: the running container cannot read %s: %q, %v", when, name, b, err)
		}
	}
	readFresh("before")
	d.stop(t)
	readFresh("daemon stopped with SIGTERM")
	d = startDaemon(t, bin, dir, cfg)
	readFresh("daemon restarted")
	if log := readFile(filepath.Join(dir, "daemon.log")); !strings.Contains(log, "re-attached to the running FUSE server") || !strings.Contains(log, "remote layer still mounted, kept") {
		t.Fatalf("the restarted daemon did not re-attach and keep the mount; log:\n%s", log)
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.cmd.Wait()
	d.log.Close()
	readFresh("daemon killed")
	d = startDaemon(t, bin, dir, cfg)
	sn = d.client(t)
	readFresh("daemon restarted after the kill")
	if _, err := sn.Prepare(ctx, "container-2", chain1); err != nil {
		t.Fatalf("new container after restarts: %v", err)
	}
	if st, err := server.Stats(); err != nil || len(st) != 1 || st[0].Opens < int64(next) {
		t.Fatalf("server stats = %+v, want one layer with at least %d opens", st, next)
	}

	// The FUSE server itself dies: the daemon starts it again and revives
	// the layer on next use, so new containers work.
	pid := processWith(t, "fuse-server", sock)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for server.Ping(ctx) == nil {
		time.Sleep(10 * time.Millisecond)
	}
	ms, err = sn.Prepare(ctx, "container-3", chain1)
	if err != nil {
		t.Fatalf("new container after the FUSE server died: %v", err)
	}
	rootfs3 := filepath.Join(dir, "rootfs3")
	if err := os.Mkdir(rootfs3, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mount.All(ms, rootfs3); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(rootfs3, "f49"))
	_ = mount.UnmountAll(rootfs3, 0)
	if err != nil || string(b) != "data" {
		t.Fatalf("read through a layer revived by a new FUSE server: %q, %v", b, err)
	}
	if newPid := processWith(t, "fuse-server", sock); newPid == pid {
		t.Fatal("the FUSE server was not started again")
	}
	d.stop(t)

	// Stopping the server unmounts every layer.
	if err := mount.UnmountAll(rootfs, 0); err != nil {
		t.Fatal(err)
	}
	if err := server.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, _ := mountutil.Under(filepath.Join(dir, "root"))
		if len(ms) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mounts left after the server's shutdown: %+v", ms)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processWith returns the pid of the one process whose command line
// contains all of words.
func processWith(t *testing.T, words ...string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmdline, all := string(b), true
		for _, w := range words {
			all = all && strings.Contains(cmdline, w)
		}
		if all {
			if found != 0 {
				t.Fatalf("more than one process matches %q", words)
			}
			found = pid
		}
	}
	if found == 0 {
		t.Fatalf("no process matches %q", words)
	}
	return found
}
