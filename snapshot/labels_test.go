package snapshot

import (
	"strings"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

const goodDigest = "sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// malformedDigests are layer-digest label values that must never be looked
// up: each falls back to a pull (layerdigest tests the parser itself).
var malformedDigests = []struct{ name, value string }{
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

func TestParseRemoteRequest(t *testing.T) {
	for _, tc := range []struct {
		name    string
		labels  map[string]string
		wantOK  bool
		wantErr bool
	}{
		{"no labels", nil, false, false},
		{"target only", map[string]string{LabelTarget: "chain"}, false, false},
		{"digest only", map[string]string{LabelLayerDigest: goodDigest}, false, false},
		{"empty target", map[string]string{LabelTarget: "", LabelLayerDigest: goodDigest}, false, false},
		{"both", map[string]string{LabelTarget: "chain", LabelLayerDigest: goodDigest}, true, false},
		{"bad digest", map[string]string{LabelTarget: "chain", LabelLayerDigest: "sha256:"}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, ok, err := parseRemoteRequest(tc.labels)
			if ok != tc.wantOK || (err != nil) != tc.wantErr {
				t.Fatalf("parseRemoteRequest = %+v, %v, %v; want ok=%v err=%v", req, ok, err, tc.wantOK, tc.wantErr)
			}
			if ok && err == nil && (req.target != "chain" || req.layer.String() != goodDigest) {
				t.Fatalf("parseRemoteRequest = %+v", req)
			}
		})
	}
}

// FuzzParseRemoteRequest feeds arbitrary label values through the label
// parser: it must never panic, and a request it accepts carries a valid
// digest.
func FuzzParseRemoteRequest(f *testing.F) {
	f.Add("chain", goodDigest)
	f.Add("", "sha256:")
	f.Fuzz(func(t *testing.T, target, layer string) {
		req, ok, err := parseRemoteRequest(map[string]string{LabelTarget: target, LabelLayerDigest: layer})
		if ok && err == nil {
			if _, perr := layerdigest.Parse(req.layer.String()); perr != nil || req.target == "" {
				t.Fatalf("accepted invalid request %+v", req)
			}
		}
	})
}
