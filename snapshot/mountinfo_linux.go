//go:build linux

package snapshot

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// hasMountsUnder reports whether anything is mounted at dir or below it.
// The snapshotter checks it before every RemoveAll.
func hasMountsUnder(dir string) (bool, error) {
	return mountutil.HasMountsUnder(dir)
}

// isMounted reports whether path itself is a mountpoint.
func isMounted(path string) (bool, error) {
	return mountutil.IsMounted(path)
}

// unmountPath unmounts path, lazily if busy; never MNT_FORCE.
func unmountPath(path string) error {
	return mountutil.Unmount(path)
}

// mountpointsUnder lists the mountpoints at dir or below it, deepest first.
func mountpointsUnder(dir string) ([]string, error) {
	ms, err := mountutil.Under(dir)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Mountpoint
	}
	return out, nil
}

// overlaysUsing returns the mountpoints of overlay mounts whose options name
// a path inside dir (as lowerdir, upperdir or workdir). A container's rootfs
// is such a mount, elsewhere in the tree, over a snapshot's fs and work
// dirs: its upper dir is in use although nothing is mounted beneath it.
// The match is textual and errs on the side of "in use".
func overlaysUsing(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	// The kernel shows overlay's path options with octal escapes for
	// separators and blanks; newer kernels escape ':' in lowerdir too.
	prefixes := []string{
		escapeOption(dir, ",= \t\n\\") + "/",
		escapeOption(dir, ",= \t\n\\:") + "/",
	}
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("overlay"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var out []string
	for _, in := range infos {
		opts := in.VFSOptions + "," + in.Options
		for _, p := range prefixes {
			if strings.Contains(opts, p) {
				out = append(out, in.Mountpoint)
				break
			}
		}
	}
	return out, nil
}

// escapeOption escapes the bytes of s found in special the way the
// kernel's seq_escape does (backslash and three octal digits).
func escapeOption(s, special string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(special, s[i]) >= 0 {
			fmt.Fprintf(&b, "\\%03o", s[i])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
