//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// mountWithin mounts dir as a layer with a fresh Manager and fails the
// test if Mount has not returned when ctx ends; unblock then releases
// whatever it is stuck on.
func mountWithin(ctx context.Context, t *testing.T, dir string, unblock func()) (*Manager, string) {
	t.Helper()
	requireFUSE(t)
	m, err := NewManager(dirSource{testDigest(dir): dir}, WithAccounting(AccountOpen)) // the mode that probes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	base := t.TempDir()
	sweepMounts(t, base)
	mp := newDir(t, base, "mnt")
	done := make(chan error, 1)
	go func() { done <- m.Mount(context.Background(), mp, testDigest(dir)) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		unblock()
		<-done
		t.Fatal("Mount did not return before the test's deadline")
	}
	return m, mp
}

// passthroughOn reports whether the mount serves reads with passthrough.
func passthroughOn(m *Manager, mp string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mounts[mp].tree.passthrough.Load()
}

// The passthrough probe never blocks on a fifo at the layer root's
// catalog marker.
func TestProbeIgnoresFifoMarker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := t.TempDir()
	writeFile(t, src, "f", "x")
	marker := filepath.Join(src, catalogMarker)
	if err := unix.Mkfifo(marker, 0o644); err != nil {
		t.Fatal(err)
	}
	m, mp := mountWithin(ctx, t, src, func() {
		// A reader blocked in open(2) is released by a writer.
		if f, err := os.OpenFile(marker, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	if ok, err := mountutil.IsMounted(mp); !ok || err != nil {
		t.Errorf("not mounted: %v", err)
	}
	_ = m
}

// The probe never opens a device node at the layer root (root would open
// it): inotify sees no open of it.
func TestProbeNeverOpensDeviceMarker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := t.TempDir()
	writeFile(t, src, "f", "x")
	marker := filepath.Join(src, catalogMarker)
	if err := unix.Mknod(marker, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	in, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	if _, err := unix.InotifyAddWatch(in, marker, unix.IN_OPEN); err != nil {
		t.Fatal(err)
	}
	mountWithin(ctx, t, src, func() {})
	buf := make([]byte, 4096)
	if n, err := unix.Read(in, buf); err != unix.EAGAIN {
		t.Errorf("the device node was opened (inotify read %d bytes, %v)", n, err)
	}
}

// The probe asks about the layer's own filesystem: a layer on overlayfs
// (stacked once, as deep as MaxStackDepth allows for backing files) is
// refused by the kernel, so passthrough must be reported off even when the
// root has no catalog marker. An anonymous memory file would say yes.
func TestProbeUsesLayerFilesystem(t *testing.T) {
	requireFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tmp := t.TempDir()
	sweepMounts(t, tmp)
	lower, upper, work, merged := newDir(t, tmp, "lower"), newDir(t, tmp, "upper"), newDir(t, tmp, "work"), newDir(t, tmp, "merged")
	writeFile(t, lower, "f", "x")
	if err := unix.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		testutil.Skip(t, "cannot mount overlayfs: %v", err)
	}
	t.Cleanup(func() { mountutil.Unmount(merged) })

	plain := t.TempDir()
	writeFile(t, plain, "f", "x")
	m, mp := mountWithin(ctx, t, plain, func() {})
	if !passthroughOn(m, mp) {
		testutil.Skip(t, "kernel passthrough not granted here")
	}
	m, mp = mountWithin(ctx, t, merged, func() {})
	if passthroughOn(m, mp) {
		t.Error("passthrough reported for a layer on overlayfs, whose files the kernel refuses as backing files")
	}
	if b, err := os.ReadFile(filepath.Join(mp, "f")); err != nil || string(b) != "x" {
		t.Errorf("read: %q %v", b, err)
	}
}
