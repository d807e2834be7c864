//go:build linux

package fusefs

import (
	"reflect"
	"testing"
)

// TestMountMatchesNativeWalk: every kind of entry, walked
// natively and through the mount, in both accounting modes.
func TestMountMatchesNativeWalk(t *testing.T) {
	requireFUSE(t)
	src := everyKindLayer(t)
	want := walkInfo(t, src)
	delete(want, ".cvmfscatalog") // hidden by design
	for _, mode := range []Accounting{AccountReads, AccountOpen, AccountBytes} {
		t.Run(mode.String(), func(t *testing.T) {
			_, mp, _ := mountLayer(t, src, WithAccounting(mode))
			got := walkInfo(t, mp)
			for rel, w := range want {
				g, ok := got[rel]
				if !ok {
					t.Errorf("%q missing through the mount", rel)
					continue
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("%q differs:\n native %+v\n fuse   %+v", rel, w, g)
				}
			}
			for rel := range got {
				if _, ok := want[rel]; !ok {
					t.Errorf("%q appears only through the mount", rel)
				}
			}
			if len(want) < 70 {
				t.Errorf("fixture has only %d entries", len(want))
			}
		})
	}
}
