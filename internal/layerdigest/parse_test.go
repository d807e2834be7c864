package layerdigest

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

const good = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// malformed are layer digests that must never be looked up.
var malformed = []struct{ name, value string }{
	{"empty", ""},
	{"algorithm only", "sha256:"},
	{"path traversal", "../../../../etc"},
	{"traversal after algorithm", "sha256:../" + strings.Repeat("a", 61)},
	{"slash inside", "sha256:" + strings.Repeat("a", 32) + "/" + strings.Repeat("a", 31)},
	{"upper case", "sha256:" + strings.Repeat("A", 64)},
	{"sha512", "sha512:" + strings.Repeat("a", 128)},
	{"63 digits", "sha256:" + strings.Repeat("a", 63)},
	{"65 digits", "sha256:" + strings.Repeat("a", 65)},
	{"other algorithm", "md5:" + strings.Repeat("a", 32)},
	{"no algorithm", strings.Repeat("a", 64)},
	{"non-hex", "sha256:" + strings.Repeat("g", 64)},
	{"nul byte", "sha256:" + strings.Repeat("a", 63) + "\x00"},
	{"newline", "sha256:" + strings.Repeat("a", 64) + "\n"},
	{"leading space", " sha256:" + strings.Repeat("a", 64)},
}

func TestParse(t *testing.T) {
	d, err := Parse(good)
	if err != nil || d.String() != good {
		t.Fatalf("Parse(good) = %q, %v", d, err)
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse(tc.value)
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Parse(%q) = %q, %v; want ErrInvalidArgument", tc.value, d, err)
			}
			if d != "" {
				t.Fatalf("Parse(%q) returned %q with an error", tc.value, d)
			}
		})
	}
}

// FuzzParse checks that no input panics, that every accepted digest is
// exactly sha256 with 64 lower-case hex digits (safe as a path), and that
// Parse accepts exactly what go-digest accepts as a sha256 digest.
func FuzzParse(f *testing.F) {
	f.Add(good)
	for _, tc := range malformed {
		f.Add(tc.value)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		ref, referr := digest.Parse(s)
		if (err == nil) != (referr == nil && ref.Algorithm() == digest.SHA256) {
			t.Fatalf("Parse(%q) = %v; go-digest: %q, %v", s, err, ref, referr)
		}
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error is not ErrInvalidArgument: %v", err)
			}
			return
		}
		enc, ok := strings.CutPrefix(d.String(), "sha256:")
		if !ok || len(enc) != 64 || strings.Trim(enc, "0123456789abcdef") != "" {
			t.Fatalf("accepted %q", s)
		}
	})
}
