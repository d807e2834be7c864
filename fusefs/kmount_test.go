package fusefs

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// TestMountWithoutSelfAccess: the daemon's way of mounting (mount(2) by
// the Manager, no poll hack) gives the same mount, served to other
// processes. This process never opens files on it, as the option demands.
func TestMountWithoutSelfAccess(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "hello")
	_, mp, layer := mountLayer(t, dir, WithoutSelfAccess())
	ms, err := mountutil.Under(mp)
	if err != nil || len(ms) != 1 || ms[0].FSType != FsType || ms[0].Source != FsNamePrefix+layer.String() {
		t.Fatalf("mountinfo = %+v, %v", ms, err)
	}
	out, err := exec.Command("cat", filepath.Join(mp, "f")).Output()
	if err != nil || strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("another process reading the mount: %q, %v", out, err)
	}
}
