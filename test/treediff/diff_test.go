//go:build linux

package treediff

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWalkParseDiff(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("f", filepath.Join(dir, "l")); err != nil {
		t.Fatal(err)
	}
	entries, err := Walk(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, e := range entries {
		b, _ := json.Marshal(e)
		out.Write(append(b, '\n'))
	}
	tree, err := Parse(out.String())
	if err != nil {
		t.Fatal(err)
	}
	f := tree[filepath.Join(dir, "f")]
	if f.Type != "file" || f.Mode != 0o640 || f.Size != 1 || f.SHA256 == "" {
		t.Errorf("file entry %+v", f)
	}
	if l := tree[filepath.Join(dir, "l")]; l.Type != "symlink" || l.Link != "f" {
		t.Errorf("symlink entry %+v", l)
	}
	if d := Diff(tree, tree); len(d) != 0 {
		t.Errorf("a tree differs from itself: %v", d)
	}

	other := map[string]Entry{}
	for p, e := range tree {
		other[p] = e
	}
	g := other[filepath.Join(dir, "f")]
	g.Nlink, g.Xattrs, g.Mode = 1, nil, 0o600
	other[filepath.Join(dir, "f")] = g
	want := tree[filepath.Join(dir, "f")]
	want.Nlink, want.Xattrs = 2, []string{"user.a=b"}
	tree[filepath.Join(dir, "f")] = want
	delete(other, filepath.Join(dir, "l"))
	var losses, real []string
	for _, d := range Diff(tree, other) {
		if IsDUCCLoss(d) {
			losses = append(losses, d.Field)
		} else {
			real = append(real, d.Field)
		}
	}
	if strings.Join(losses, ",") != "nlink,xattrs" || strings.Join(real, ",") != "mode,presence" {
		t.Errorf("losses %v, differences %v", losses, real)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/a\040b`:   "/a b",
		`/t\011x`:   "/t\tx",
		`/back\134`: `/back\`,
		`/no\08`:    `/no\08`,
		`/end\04`:   `/end\04`,
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsCVMFSMtimeLoss(t *testing.T) {
	for _, tc := range []struct {
		d    Difference
		want bool
	}{
		{Difference{Field: "mtime", Want: "1714979289123456789", Got: "1714979289000000000"}, true},
		{Difference{Field: "mtime", Want: "1714979289123456789", Got: "1714979288000000000"}, false},
		{Difference{Field: "mtime", Want: "1714979289123456789", Got: "1714979289123000000"}, false},
		{Difference{Field: "size", Want: "1714979289123456789", Got: "1714979289000000000"}, false},
	} {
		if got := IsCVMFSMtimeLoss(tc.d); got != tc.want {
			t.Errorf("IsCVMFSMtimeLoss(%v) = %v, want %v", tc.d, got, tc.want)
		}
	}
}
