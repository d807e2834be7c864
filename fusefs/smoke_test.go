//go:build linux

package fusefs

import (
	"os"
	"testing"
)

func TestSmoke(t *testing.T) {
	src := t.TempDir()
	writeFile(t, src, "etc/hello", "hello")
	writeFile(t, src, ".cvmfscatalog", "")
	writeFile(t, src, ".wh.gone", "")
	m, mp, _ := mountLayer(t, src)
	ents, err := os.ReadDir(mp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Logf("%s %v", e.Name(), e.Type())
	}
	b, err := os.ReadFile(mp + "/etc/hello")
	if err != nil || string(b) != "hello" {
		t.Fatalf("%q %v", b, err)
	}
	t.Logf("%+v", m.Stats())
}
