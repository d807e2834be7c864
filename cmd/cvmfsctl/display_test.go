package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// hostile is a name from the daemon (a file in a layer, an image label)
// that would recolour the terminal, set its title and forge a line.
const hostile = "evil\x1b[31m\x1b]0;pwned\x07\r\nforged line\u202e"

func TestDisplay(t *testing.T) {
	for in, want := range map[string]string{
		"bin/sh":         "bin/sh",
		"lib/a b,c.so":   "lib/a b,c.so",
		"été/ファイル":       "été/ファイル",
		"":               "",
		"a\nb":           `"a\nb"`,
		"tab\there":      `"tab\there"`,
		"\x1b[31m":       `"\x1b[31m"`,
		"rtl\u202e":      `"rtl\u202e"`,
		"bad\xffutf8":    `"bad\xffutf8"`,
		`"looks quoted"`: `"\"looks quoted\""`,
	} {
		if got := display(in); got != want {
			t.Errorf("display(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestCommandsQuoteNames: profile, stats --layer, stats, report and missing
// print the daemon's names with their control characters quoted.
func TestCommandsQuoteNames(t *testing.T) {
	layer := digest.Digest("sha256:" + hostile)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v any
		switch r.URL.Path {
		case "/stats":
			v = []usage.LayerStats{{Layer: layer, Mounts: 1, Accounting: usage.AccountReads}}
		case "/stats/profile":
			v = []usage.FileAccess{{Path: hostile, Opens: 1}}
		case "/usage/profile":
			v = []usage.LayerUsage{{Layer: layer, Profile: []usage.FileAccess{{Path: hostile, Opens: 1}}}}
		case "/usage/report":
			v = []usage.ReportRow{{Image: hostile, Layer: layer, Served: true}, {Image: hostile, Reason: hostile}}
		case "/usage/missing":
			v = []usage.ImageUsage{{Image: hostile, Layers: []usage.ImageLayer{{Reason: hostile}}}}
		default:
			http.Error(w, hostile, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(v)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, args := range [][]string{
		{"stats"},
		{"stats", "--layer", digest.FromString("x").String()},
		{"profile", "some/image:1"},
		{"report", "--wait", "0s", "some/image:1"},
		{"missing"},
	} {
		var out bytes.Buffer
		if err := run(context.Background(), append(args, "--address", addr), &out); err != nil {
			t.Errorf("%v: %v", args, err)
			continue
		}
		if strings.ContainsAny(out.String(), "\x1b\x07\r\u202e") || strings.Contains(out.String(), "\nforged") {
			t.Errorf("%v prints a name raw:\n%s", args, out.String())
		}
		if !strings.Contains(out.String(), `\x1b[31m`) {
			t.Errorf("%v does not show the name quoted:\n%s", args, out.String())
		}
	}
}
