//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestLayerStateDroppedWithLastMount: a layer's accounting lives while
// any mount serves it and goes with the last one, so the Manager's memory
// (and the metrics over it) is bounded by the layers in use. A failed
// Mount leaves no state either.
func TestLayerStateDroppedWithLastMount(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "bin/tool", "tool")
	m, mp1, layer := mountLayer(t, src)
	ctx := context.Background()
	mp2 := filepath.Join(filepath.Dir(mp1), "mnt2")
	if err := os.Mkdir(mp2, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount(ctx, mp2, layer); err != nil {
		t.Fatal(err)
	}
	for _, mp := range []string{mp1, mp2} {
		if b, err := os.ReadFile(filepath.Join(mp, "bin", "tool")); err != nil || string(b) != "tool" {
			t.Fatalf("read through %s: %q, %v", mp, b, err)
		}
	}

	if err := m.Unmount(ctx, mp1); err != nil {
		t.Fatal(err)
	}
	if s := statsOf(t, m); len(s) != 1 || s[0].Mounts != 1 || s[0].Opens == 0 {
		t.Fatalf("stats with one mount left = %+v; want the layer, 1 mount, its opens kept", s)
	}
	if p := profileOf(t, m, layer); len(p) != 1 || p[0].Path != "bin/tool" {
		t.Fatalf("profile with one mount left = %+v", p)
	}

	if err := m.Unmount(ctx, mp2); err != nil {
		t.Fatal(err)
	}
	if s := statsOf(t, m); len(s) != 0 {
		t.Errorf("stats after the last unmount = %+v, want none", s)
	}
	if p := profileOf(t, m, layer); p != nil {
		t.Errorf("profile after the last unmount = %+v, want nil", p)
	}
	if n := layerStates(m); n != 0 {
		t.Errorf("after the last unmount: %d layer states kept, want 0", n)
	}

	// Mounted again: counting starts afresh.
	if err := m.Mount(ctx, mp1, layer); err != nil {
		t.Fatal(err)
	}
	if s := statsOf(t, m); len(s) != 1 || s[0].Mounts != 1 || s[0].Opens != 0 {
		t.Errorf("stats after mounting again = %+v, want 1 mount and no opens", s)
	}

	// A Mount that fails (layer absent) leaves no state behind.
	if err := m.Mount(ctx, mp2, testDigest("absent")); err == nil {
		t.Fatal("mount of an absent layer succeeded")
	}
	if n := layerStates(m); n != 1 {
		t.Errorf("after a failed mount: %d layer states kept, want 1", n)
	}
}

// layerStates returns the number of layers m keeps state for (a pending
// reservation keeps one too).
func layerStates(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.layers)
}
