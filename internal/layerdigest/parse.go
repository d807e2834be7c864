package layerdigest

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const prefix = "sha256:"

// Parse accepts only "sha256:" followed by exactly 64 lower-case hex
// digits, the only form a layer store is keyed by (DUCC writes no other).
// Anything else (empty, other algorithms, upper case, truncated, path
// characters) returns an error wrapping errdefs.ErrInvalidArgument; it never
// panics, and the result is safe to use as a path component.
func Parse(s string) (digest.Digest, error) {
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return "", fmt.Errorf("layer digest %q is not sha256 with 64 hex digits: %w", s, errdefs.ErrInvalidArgument)
	}
	for i := len(prefix); i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", fmt.Errorf("layer digest %q has a character outside [0-9a-f]: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return digest.Digest(s), nil
}
