//go:build linux

package fusefs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Closing a file costs no FLUSH round trip: the first one is answered
// ENOSYS, and the kernel sends no more to the mount.
func TestCloseSendsNoFlush(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "f", "content")
	c := newOpcodeCounter()
	_, mp, _ := mountLayer(t, src, withRequestLog(c))
	read := func() {
		b, err := os.ReadFile(filepath.Join(mp, "f"))
		if err != nil || string(b) != "content" {
			t.Fatalf("read = %q, %v", b, err)
		}
	}
	read()
	first := c.count("FLUSH")
	for range 4 {
		read()
	}
	if n := c.count("FLUSH") - first; n != 0 {
		t.Errorf("4 more closes sent %d FLUSH requests; want none after the first was answered ENOSYS", n)
	}
	if n := c.count("OPEN"); n == 0 {
		t.Errorf("no OPEN counted: the request log is not read")
	}
}

// In "reads" mode (the default) opening a file costs no round trip: the
// kernel stops sending OPEN after the first is answered ENOSYS, and keeps
// the file's pages across opens, so only its first read reaches the
// daemon. A read that starts past offset 0 is profiled without an open.
func TestReadsModeOpensWithoutRoundTrip(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "f", "content")
	writeFile(t, src, "tail", strings.Repeat("x", 3*4096)+"end")
	c := newOpcodeCounter()
	m, mp, layer := mountLayer(t, src, withRequestLog(c))
	read := func() {
		b, err := os.ReadFile(filepath.Join(mp, "f"))
		if err != nil || string(b) != "content" {
			t.Fatalf("read = %q, %v", b, err)
		}
	}
	read()
	opens, reads := c.count("OPEN"), c.count("READ")
	if reads != 1 {
		t.Errorf("the first read sent %d READ requests; want 1", reads)
	}
	for range 4 {
		read()
	}
	if n := c.count("OPEN") - opens; n != 0 {
		t.Errorf("4 more opens sent %d OPEN requests; want none", n)
	}
	if n := c.count("READ") - reads; n != 0 {
		t.Errorf("4 more reads of a cached file sent %d READ requests; want none", n)
	}
	f, err := os.Open(filepath.Join(mp, "tail"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 3)
	if _, err := f.ReadAt(buf, 3*4096); err != nil || string(buf) != "end" {
		t.Fatalf("pread = %q, %v", buf, err)
	}
	prof := map[string]usage.FileAccess{}
	for _, fa := range profileOf(t, m, layer) {
		prof[fa.Path] = fa
	}
	if prof["f"] != (usage.FileAccess{Path: "f", Opens: 1, Bytes: 7}) {
		t.Errorf("profile of f = %+v, want 1 fetch of 7 bytes", prof["f"])
	}
	if fa := prof["tail"]; fa.Opens != 0 || fa.Bytes < 3 {
		t.Errorf("profile of tail = %+v, want no open and the bytes served", fa)
	}
}
