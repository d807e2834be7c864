package fusefs

import (
	"slices"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		kind   kind
		target string
	}{
		{"a", kindPlain, ""},
		{".wh", kindPlain, ""},
		{"x.wh.a", kindPlain, ""},
		{".wh.a", kindWhiteout, "a"},
		{".wh. spaced name", kindWhiteout, " spaced name"},
		{".wh..hidden", kindWhiteout, ".hidden"},
		{".wh..wh..opq", kindOpaque, ""},
		{".wh..wh..plnk", kindHidden, ""},
		{".wh..wh.", kindHidden, ""},
		{".wh.", kindHidden, ""},
		{".wh..", kindHidden, ""},
		{".wh...", kindHidden, ""},
		{".cvmfscatalog", kindHidden, ""},
		{".wh..cvmfscatalog", kindWhiteout, ".cvmfscatalog"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, target := classify(tc.name)
			if k != tc.kind || target != tc.target {
				t.Errorf("classify(%q) = %v, %q; want %v, %q", tc.name, k, target, tc.kind, tc.target)
			}
		})
	}
}

func names(ps []presented) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.name)
	}
	return out
}

func TestTranslate(t *testing.T) {
	ents := func(ns ...string) []dirent {
		var out []dirent
		for i, n := range ns {
			out = append(out, dirent{name: n, typ: sIFREG, ino: uint64(i + 10)})
		}
		return out
	}
	tests := []struct {
		name   string
		in     []dirent
		drop   bool
		below  bool // a directory below the layer root
		want   []string
		opaque bool
	}{
		{"plain", ents(".", "..", "a", "b"), false, false, []string{".", "..", "a", "b"}, false},
		{"whiteout", ents("a", ".wh.b"), false, false, []string{"a", "b"}, false},
		{"markers hidden", ents(".cvmfscatalog", ".wh..wh..opq", ".wh..wh..plnk", "a"), false, false, []string{"a"}, true},
		{"real entry beats whiteout", ents(".wh.a", "a"), false, false, []string{"a"}, false},
		{"whiteouts dropped in opaque subtree", ents(".wh.a", "b"), true, false, []string{"b"}, false},
		{"whiteout of a hidden name dropped", ents(".wh..cvmfscatalog"), false, false, nil, false},
		{"catalog file below the root shown", ents(".cvmfscatalog", ".wh..wh..opq", "a"), false, true, []string{".cvmfscatalog", "a"}, true},
		{"whiteout of a catalog file below the root", ents(".wh..cvmfscatalog"), false, true, []string{".cvmfscatalog"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, opaque := translate(tc.in, tc.drop, !tc.below)
			if !slices.Equal(names(got), tc.want) || opaque != tc.opaque {
				t.Errorf("translate = %q, opaque %v; want %q, %v", names(got), opaque, tc.want, tc.opaque)
			}
			for _, p := range got {
				if p.backing != p.name && (p.typ != sIFCHR || p.backing != whiteoutPrefix+p.name) {
					t.Errorf("entry %+v: a translated entry must be a char device backed by its marker", p)
				}
			}
		})
	}
}

// FuzzWhiteoutName checks the name translation for any pair of backing
// names: no marker is ever shown, a shown name is never a marker, names are
// unique, and whiteouts are the only synthesised entries.
func FuzzWhiteoutName(f *testing.F) {
	for _, s := range []string{"a", ".wh.a", ".wh..wh..opq", ".cvmfscatalog", ".wh.", ".wh..", ".wh..wh.x", "é .wh.\n"} {
		f.Add(s, "a", false)
	}
	f.Fuzz(func(t *testing.T, n1, n2 string, drop bool) {
		for _, n := range []string{n1, n2} {
			if n == "" || strings.ContainsAny(n, "/\x00") {
				return // not a valid directory entry name
			}
		}
		k, target := classify(n1)
		switch k {
		case kindWhiteout:
			if whiteoutPrefix+target != n1 || target == "" {
				t.Fatalf("classify(%q) gave target %q", n1, target)
			}
		case kindPlain:
			if strings.HasPrefix(n1, whiteoutPrefix) || n1 == catalogMarker {
				t.Fatalf("marker %q classified plain", n1)
			}
		}
		in := []dirent{{name: n1, typ: sIFREG}, {name: n2, typ: sIFDIR}}
		if n1 == n2 {
			in = in[:1]
		}
		out, _ := translate(in, drop, true)
		seen := map[string]bool{}
		for _, p := range out {
			if !presentable(p.name, true) {
				t.Fatalf("translate(%q, %q) shows marker name %q", n1, n2, p.name)
			}
			if seen[p.name] {
				t.Fatalf("translate(%q, %q) shows %q twice", n1, n2, p.name)
			}
			seen[p.name] = true
			if p.backing != p.name {
				if drop || p.typ != sIFCHR || p.backing != whiteoutPrefix+p.name {
					t.Fatalf("translate(%q, %q, %v) synthesised %+v", n1, n2, drop, p)
				}
			}
		}
	})
}
