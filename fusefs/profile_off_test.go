package fusefs

import (
	"testing"

	"github.com/containerd/errdefs"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// TestProfileLimitZeroTurnsProfileOff: 0 is a valid limit meaning no
// per-file profile (opens still counted); a negative one is refused.
func TestProfileLimitZeroTurnsProfileOff(t *testing.T) {
	var c config
	if err := WithProfileLimit(0)(&c); err != nil {
		t.Fatalf("WithProfileLimit(0) = %v, want accepted", err)
	}
	if err := WithProfileLimit(-1)(&c); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("WithProfileLimit(-1) = %v, want ErrInvalidArgument", err)
	}
	a := newAccount(0)
	if f := a.opened("bin/sh"); f != nil {
		t.Fatal("a profile entry was kept with the profile off")
	}
	f := a.opened("bin/sh")
	f.addBytes(10) // nil-safe
	var s usage.LayerStats
	a.stats(&s)
	if s.Opens != 2 || s.UniqueFiles != 0 || len(a.profile()) != 0 {
		t.Errorf("profile off: opens %d unique %d profile %v; want 2, 0, none", s.Opens, s.UniqueFiles, a.profile())
	}
}
