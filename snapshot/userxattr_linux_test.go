//go:build linux

package snapshot

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

const userNSChildEnv = "SNAPSHOT_TEST_USERNS_CHILD"

// TestUserxattrInUserNamespace runs a snapshotter as uid 0 inside a user
// namespace, as rootless containerd does: by default its overlay mounts
// carry userxattr although the effective uid is 0.
func TestUserxattrInUserNamespace(t *testing.T) {
	if os.Getenv(userNSChildEnv) == "1" {
		// In the namespace, with the default options.
		if os.Geteuid() != 0 {
			t.Fatalf("euid %d in the user namespace, want 0", os.Geteuid())
		}
		sn, err := New(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sn.Close() })
		if opts := overlayOptions(t, sn.(*snapshotter)); !slices.Contains(opts, "userxattr") {
			t.Fatalf("overlay options in a user namespace = %q, want userxattr", opts)
		}
		return
	}
	testutil.RequiresRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestUserxattrInUserNamespace$", "-test.count=1")
	cmd.Env = append(os.Environ(), userNSChildEnv+"=1", "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a user namespace: %v\n%s", err, out)
	}
}
