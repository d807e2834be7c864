package fusefs

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// TestCheckServedMountInProcess: a mount the Manager serves is checked
// without a syscall through it, and is reported dead once something else
// unmounted it (its server loop then ends).
func TestCheckServedMountInProcess(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "x")
	m, mp, _ := mountLayer(t, dir)
	ctx := context.Background()
	if err := m.Check(ctx, mp); err != nil {
		t.Fatalf("Check of a live mount = %v", err)
	}
	if err := mountutil.Unmount(mp); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := m.Check(ctx, mp)
		if errdefs.IsUnavailable(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Check after an external unmount = %v, want ErrUnavailable", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Unmount of the now-dead entry cleans up without error.
	if err := m.Unmount(ctx, mp); err != nil {
		t.Fatalf("Unmount of a dead mount = %v", err)
	}
	if err := m.Check(ctx, mp); !errdefs.IsNotFound(err) {
		t.Fatalf("Check after Unmount = %v, want ErrNotFound", err)
	}
}
