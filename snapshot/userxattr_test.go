package snapshot

import (
	"context"
	"testing"

	"github.com/containerd/errdefs"
)

func withUserNSDetector(inUserNS func() bool) Opt {
	return func(c *config) error {
		c.inUserNS = inUserNS
		return nil
	}
}

// overlayOptions returns the options of the overlay mount of a container
// snapshot stacked on a committed layer.
func overlayOptions(t *testing.T, sn *snapshotter) []string {
	t.Helper()
	ctx := context.Background()
	if _, err := sn.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if err := sn.Commit(ctx, "base-c", "base"); err != nil {
		t.Fatal(err)
	}
	ms, err := sn.Prepare(ctx, "container", "base-c")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Type != "overlay" {
		t.Fatalf("mounts = %+v, want one overlay", ms)
	}
	return ms[0].Options
}

func TestUserxattrOption(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []Opt
		inUserNS bool
		want     bool
	}{
		{"auto in a user namespace", nil, true, true},
		{"auto outside one", nil, false, false},
		{"explicit auto in a user namespace", []Opt{WithUserxattr(UserxattrAuto)}, true, true},
		{"on outside a user namespace", []Opt{WithUserxattr(UserxattrOn)}, false, true},
		{"off in a user namespace", []Opt{WithUserxattr(UserxattrOff)}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Opt{withUserNSDetector(func() bool { return tc.inUserNS })}, tc.opts...)
			sn := newTestSnapshotter(t, t.TempDir(), newFakeLayerFS(), opts...)
			got := false
			for _, o := range overlayOptions(t, sn) {
				if o == "userxattr" {
					got = true
				}
			}
			if got != tc.want {
				t.Fatalf("userxattr in overlay options = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseUserxattr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want UserxattrMode
		bad  bool
	}{
		{in: "auto", want: UserxattrAuto},
		{in: "", want: UserxattrAuto},
		{in: "on", want: UserxattrOn},
		{in: "off", want: UserxattrOff},
		{in: "true", bad: true},
		{in: "ON", bad: true},
		{in: "yes", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseUserxattr(tc.in)
			if tc.bad {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("ParseUserxattr(%q) = %v, %v; want ErrInvalidArgument", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseUserxattr(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if tc.in != "" && got.String() != tc.in {
				t.Fatalf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
	if _, err := New(context.Background(), t.TempDir(), WithUserxattr(UserxattrMode(42))); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("New with an unknown mode = %v, want ErrInvalidArgument", err)
	}
}
