//go:build linux

package fusefs

import "testing"

func TestOwnerFor(t *testing.T) {
	for _, tc := range []struct {
		name             string
		euid, egid       int
		uid, gid         uint32
		wantUID, wantGID uint32
	}{
		{"root keeps root", 0, 0, 0, 0, 0, 0},
		{"root keeps others", 0, 0, 1000, 100, 1000, 100},
		{"user reports root's files as its own", 1001, 1002, 0, 0, 1001, 1002},
		{"user keeps others", 1001, 1002, 1000, 100, 1000, 100},
		{"user maps uid and gid apart", 1001, 1002, 0, 50, 1001, 50},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, gid := ownerFor(tc.euid, tc.egid).apply(tc.uid, tc.gid)
			if uid != tc.wantUID || gid != tc.wantGID {
				t.Errorf("apply(%d, %d) = %d, %d, want %d, %d", tc.uid, tc.gid, uid, gid, tc.wantUID, tc.wantGID)
			}
		})
	}
}
