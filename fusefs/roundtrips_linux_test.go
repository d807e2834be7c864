//go:build linux

package fusefs

import (
	"os"
	"path/filepath"
	"testing"
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
