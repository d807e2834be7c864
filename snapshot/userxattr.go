package snapshot

import (
	"fmt"

	"github.com/containerd/errdefs"
)

// UserxattrMode chooses whether overlay mounts carry the "userxattr"
// option, which makes overlayfs keep its metadata in user.overlay.*
// xattrs: a mount made inside a user namespace (rootless containerd)
// requires it, since trusted.* xattrs are out of its reach.
type UserxattrMode int

const (
	// UserxattrAuto adds userxattr when the snapshotter runs inside a user
	// namespace, as containerd's overlay snapshotter does. Rootless
	// containerd runs as uid 0 in its namespace, so the effective uid
	// tells nothing. It is the default.
	UserxattrAuto UserxattrMode = iota
	// UserxattrOn always adds userxattr.
	UserxattrOn
	// UserxattrOff never adds it.
	UserxattrOff
)

// ParseUserxattr parses a configured mode: "auto" (or empty), "on" or
// "off". Anything else returns an error wrapping errdefs.ErrInvalidArgument.
func ParseUserxattr(s string) (UserxattrMode, error) {
	switch s {
	case "auto", "":
		return UserxattrAuto, nil
	case "on":
		return UserxattrOn, nil
	case "off":
		return UserxattrOff, nil
	}
	return 0, fmt.Errorf("userxattr mode %q: want auto, on or off: %w", s, errdefs.ErrInvalidArgument)
}

// String returns "auto", "on" or "off", the form ParseUserxattr accepts.
func (m UserxattrMode) String() string {
	switch m {
	case UserxattrAuto:
		return "auto"
	case UserxattrOn:
		return "on"
	case UserxattrOff:
		return "off"
	}
	return fmt.Sprintf("UserxattrMode(%d)", int(m))
}

// WithUserxattr sets whether overlay mounts carry the userxattr option.
// The default is UserxattrAuto. An unknown mode returns an error wrapping
// errdefs.ErrInvalidArgument.
func WithUserxattr(m UserxattrMode) Opt {
	return func(c *config) error {
		switch m {
		case UserxattrAuto, UserxattrOn, UserxattrOff:
			c.userxattr = m
			return nil
		}
		return fmt.Errorf("userxattr mode %d: %w", int(m), errdefs.ErrInvalidArgument)
	}
}

// resolveUserxattr decides the userxattr option once, at New.
func resolveUserxattr(m UserxattrMode, inUserNS func() bool) bool {
	switch m {
	case UserxattrOn:
		return true
	case UserxattrOff:
		return false
	}
	return inUserNS()
}
