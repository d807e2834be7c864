package unixsock

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	// maxPath is the longest path a unix socket can be bound at: sun_path
	// holds 108 bytes, the last a NUL.
	maxPath = 107
	// tmpOverhead is what Listen's temporary name adds to the directory:
	// "/.s" + up to 10 random digits + "/s".
	tmpOverhead = len("/.s4294967295/s")
)

// Check reports whether Listen can bind a socket at path, as far as the
// path alone tells: it must name a file (not "/", no trailing slash),
// contain no NUL, and be short enough once absolute, both itself and the
// temporary name Listen may bind first. Errors wrap
// errdefs.ErrInvalidArgument.
func Check(path string) error {
	if path == "" || strings.ContainsRune(path, 0) {
		return fmt.Errorf("socket path %q: empty or holds a NUL: %w", path, errdefs.ErrInvalidArgument)
	}
	if strings.HasSuffix(path, "/") || filepath.Clean(path) == "/" {
		return fmt.Errorf("socket path %q names a directory: %w", path, errdefs.ErrInvalidArgument)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("socket path %q: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if n := max(len(abs), len(filepath.Dir(abs))+tmpOverhead); n > maxPath {
		return fmt.Errorf("socket path %q is too long for a unix socket (%d bytes with a temporary name, at most %d): %w", abs, n, maxPath, errdefs.ErrInvalidArgument)
	}
	return nil
}
