package usage

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestParsePublishedProfile(t *testing.T) {
	layer := digest.FromString("layer")
	other := digest.FromString("other")
	tooMany, _ := json.Marshal(PublishedProfile{Version: 1, Layer: layer, Files: make([]string, MaxPublishedFiles+1)})
	for _, tc := range []struct {
		name, in string
		want     []string
		fails    bool
	}{
		{"paths kept in order", `{"version":1,"layer":"` + layer.String() + `","files":["b/c","a"]}`, []string{"b/c", "a"}, false},
		{"unclean, absolute and escaping paths dropped", `{"version":1,"layer":"` + layer.String() + `","files":["../x","/etc/passwd","a/../b","a//b","",".","ok","..","a\u0000b"]}`, []string{"ok"}, false},
		{"another version", `{"version":2,"layer":"` + layer.String() + `","files":["a"]}`, nil, true},
		{"another layer", `{"version":1,"layer":"` + other.String() + `","files":["a"]}`, nil, true},
		{"not JSON", `files: a`, nil, true},
		{"too many files", string(tooMany), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePublishedProfile([]byte(tc.in), layer)
			if (err != nil) != tc.fails || !slices.Equal(got, tc.want) {
				t.Fatalf("= %q, %v; want %q (fails %v)", got, err, tc.want, tc.fails)
			}
		})
	}
}

func TestPublishProfileRoundTrip(t *testing.T) {
	layer := digest.FromString("layer")
	u := LayerUsage{Layer: layer, Profile: []FileAccess{{Path: "bin/sh", Bytes: 10}, {Path: "../evil"}, {Path: "lib/x.so", Bytes: 5}}}
	b, err := json.Marshal(PublishProfile(u))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePublishedProfile(b, layer)
	if err != nil || !slices.Equal(got, []string{"bin/sh", "lib/x.so"}) {
		t.Fatalf("round trip: %q, %v (%s)", got, err, b)
	}
	if strings.Contains(string(b), "evil") {
		t.Fatalf("an escaping path was published: %s", b)
	}
}

func FuzzParsePublishedProfile(f *testing.F) {
	layer := digest.FromString("layer")
	f.Add([]byte(`{"version":1,"layer":"` + layer.String() + `","files":["a","../b"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		paths, err := ParsePublishedProfile(b, layer)
		if err != nil {
			return
		}
		for _, p := range paths {
			if !ValidProfilePath(p) {
				t.Fatalf("invalid path %q returned", p)
			}
		}
	})
}
