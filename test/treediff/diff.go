package treediff

import (
	"bufio"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Entry is what a process sees at one path; `probe walk` prints one per
// line as JSON.
type Entry struct {
	Path   string   `json:"path"`
	Type   string   `json:"type"`
	Mode   uint32   `json:"mode"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Size   int64    `json:"size"`
	Mtime  int64    `json:"mtime"`
	SHA256 string   `json:"sha256,omitempty"`
	Link   string   `json:"link,omitempty"`
	Rdev   uint64   `json:"rdev,omitempty"`
	Nlink  uint64   `json:"nlink"`
	Xattrs []string `json:"xattrs,omitempty"`
}

// Parse decodes the output of `probe walk` into entries by path.
func Parse(out string) (map[string]Entry, error) {
	tree := map[string]Entry{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("parse walk line %q: %w", sc.Text(), err)
		}
		tree[e.Path] = e
	}
	return tree, sc.Err()
}

// Difference is one field of one path that differs between two trees.
type Difference struct {
	Path, Field string
	Want, Got   string
}

// String says what differs, e.g. `"/a" mode: want 755, got 700`.
func (d Difference) String() string {
	return fmt.Sprintf("%q %s: want %s, got %s", d.Path, d.Field, d.Want, d.Got)
}

// Diff compares got against want on type, mode, uid, gid, size (not
// of directories, whose size is the filesystem's business), mtime, content
// hash, link target and rdev (but not the mtime of "/"), and also on xattrs and on the link count of
// non-directories, the two things DUCC is known to lose. Differences come
// sorted by path.
func Diff(want, got map[string]Entry) []Difference {
	var out []Difference
	add := func(path, field string, w, g any) {
		if fmt.Sprint(w) != fmt.Sprint(g) {
			out = append(out, Difference{Path: path, Field: field, Want: fmt.Sprint(w), Got: fmt.Sprint(g)})
		}
	}
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			out = append(out, Difference{Path: p, Field: "presence", Want: w.Type, Got: "missing"})
			continue
		}
		add(p, "type", w.Type, g.Type)
		add(p, "mode", fmt.Sprintf("%o", w.Mode), fmt.Sprintf("%o", g.Mode))
		add(p, "uid", w.UID, g.UID)
		add(p, "gid", w.GID, g.GID)
		if w.Type != "dir" {
			add(p, "size", w.Size, g.Size)
			add(p, "nlink", w.Nlink, g.Nlink)
		}
		if p != "/" {
			// The runtime touches the root directory when it starts
			// the container, so its mtime is the run's, not the image's.
			add(p, "mtime", w.Mtime, g.Mtime)
		}
		add(p, "sha256", w.SHA256, g.SHA256)
		add(p, "link", w.Link, g.Link)
		add(p, "rdev", w.Rdev, g.Rdev)
		add(p, "xattrs", w.Xattrs, g.Xattrs)
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			out = append(out, Difference{Path: p, Field: "presence", Want: "missing", Got: g.Type})
		}
	}
	slices.SortFunc(out, func(a, b Difference) int { return strings.Compare(a.Path+a.Field, b.Path+b.Field) })
	return out
}

// IsDUCCLoss reports whether d is a difference DUCC itself causes: xattrs
// dropped at ingest, or a hardlink turned into separate files.
func IsDUCCLoss(d Difference) bool {
	switch d.Field {
	case "xattrs":
		return d.Got == "[]"
	case "nlink":
		return d.Got == "1"
	}
	return false
}

// IsCVMFSMtimeLoss reports whether d is the sub-second part of an mtime
// lost by a CVMFS client, whose catalog keeps whole seconds.
func IsCVMFSMtimeLoss(d Difference) bool {
	if d.Field != "mtime" {
		return false
	}
	w, werr := strconv.ParseInt(d.Want, 10, 64)
	g, gerr := strconv.ParseInt(d.Got, 10, 64)
	return werr == nil && gerr == nil && g%1e9 == 0 && g == w-w%1e9
}
