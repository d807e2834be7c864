//go:build linux

package fusefs

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// maxRead returns the max_read option of the FUSE mount at mp.
func maxRead(t *testing.T, mp string) string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp))
	if err != nil || len(ms) != 1 {
		t.Fatalf("mountinfo of %s: %v, %v", mp, ms, err)
	}
	for _, o := range strings.Split(ms[0].VFSOptions, ",") {
		if v, ok := strings.CutPrefix(o, "max_read="); ok {
			return v
		}
	}
	t.Fatalf("no max_read in %q", ms[0].VFSOptions)
	return ""
}

// TestRequestSizes: a mount whose reads the daemon serves negotiates
// requests of 1 MiB; once the kernel has granted passthrough to a layer of
// a store, later mounts from that store, which serve no data, negotiate
// small ones (and so small per-reader buffers). Where the kernel grants no
// passthrough, every mount keeps large requests.
func TestRequestSizes(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	layers := dirSource{}
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(src, name)
		writeFile(t, dir, "f", name)
		layers[testDigest(dir)] = dir
	}
	mountAll := func(t *testing.T, mode Accounting) (*Manager, []string) {
		m, err := NewManager(layers, WithAccounting(mode))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()) })
		base := t.TempDir()
		sweepMounts(t, base)
		var mps []string
		for _, name := range []string{"a", "b"} {
			mp := newDir(t, base, name)
			if err := m.Mount(context.Background(), mp, testDigest(filepath.Join(src, name))); err != nil {
				t.Fatal(err)
			}
			mps = append(mps, mp)
		}
		return m, mps
	}
	t.Run("bytes", func(t *testing.T) {
		_, mps := mountAll(t, AccountBytes)
		for _, mp := range mps {
			if got := maxRead(t, mp); got != "1048576" {
				t.Errorf("bytes mode: max_read=%s, want 1048576", got)
			}
		}
	})
	t.Run("open", func(t *testing.T) {
		m, mps := mountAll(t, AccountOpen)
		// The first mount of the store does not know yet.
		if got := maxRead(t, mps[0]); got != "1048576" {
			t.Errorf("first mount: max_read=%s, want 1048576", got)
		}
		if !passthroughOn(m, mps[0]) {
			// Reads go to the daemon: every mount keeps large requests.
			if got := maxRead(t, mps[1]); got != "1048576" {
				t.Errorf("no passthrough: max_read=%s, want 1048576", got)
			}
			return
		}
		if got := maxRead(t, mps[1]); got != "8192" {
			t.Errorf("mount after passthrough was granted: max_read=%s, want 8192", got)
		}
		if !passthroughOn(m, mps[1]) {
			t.Error("second mount lost passthrough")
		}
	})
}
