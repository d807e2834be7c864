//go:build linux

package ducc_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// sharedDir returns an empty directory that every user can reach: the
// test's temporary directory and its parent made 0755.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := testutil.RemovableTempDir(t)
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// reachableBy reports whether uid can find path (test -e as that user).
func reachableBy(t *testing.T, uid int, path string) bool {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", `test -e "$1"`, "sh", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), NoSetGroups: true}}
	err := cmd.Run()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("run as uid %d: %v", uid, err)
	}
	return err == nil
}

// A store created by WriteLayer as root keeps setuid binaries and device
// nodes where no other user can reach them.
func TestWriteLayerMakesStorePrivate(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	const nobody = 65534
	base := sharedDir(t)
	if !reachableBy(t, nobody, base) {
		t.Fatalf("test setup: %s is not reachable by uid %d", base, nobody)
	}
	setuid := testutil.File("bin/su", "#!/bin/sh\n")
	setuid.Mode = 0o4755
	repo := ducc.New(filepath.Join(base, "srv", "layers"))
	blob, _ := blobOf(testutil.MustLayer(setuid, testutil.CharDev("disk", 7, 0)), "")
	if _, err := repo.WriteLayer(ctx, blob); err != nil {
		t.Fatal(err)
	}
	root, err := repo.Lookup(ctx, blob.Digest)
	if err != nil {
		t.Fatal(err)
	}
	// What containers see is unchanged.
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "bin/su"), &st); err != nil || st.Mode&0o7777 != 0o4755 {
		t.Errorf("setuid file: mode %o %v", st.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(root, "disk"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Mode&0o777 != 0o666 {
		t.Errorf("device node: mode %o %v", st.Mode, err)
	}
	for _, d := range []string{repo.Root(), filepath.Join(repo.Root(), ".layers")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v %v, want 0700", d, fi.Mode(), err)
		}
	}
	for _, p := range []string{filepath.Join(root, "bin/su"), filepath.Join(root, "disk")} {
		if reachableBy(t, nobody, p) {
			t.Errorf("uid %d reaches %s", nobody, p)
		}
	}
}

// A store that other users can reach is refused before anything is
// fetched, unless its filesystem is mounted nosuid,nodev.
func TestWriteLayerRefusesSharedStore(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(sharedDir(t), "repo")
	if err := os.MkdirAll(filepath.Join(root, ".layers"), 0o755); err != nil {
		t.Fatal(err)
	}
	repo := ducc.New(root)
	blob, opened := blobOf(testutil.MustLayer(testutil.File("f", "x")), "")
	_, err := repo.WriteLayer(ctx, blob)
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("write into a shared store: %v, want ErrFailedPrecondition", err)
	}
	t.Log(err)
	if *opened != 0 {
		t.Error("the blob was fetched")
	}
	if _, err := repo.Lookup(ctx, blob.Digest); !errdefs.IsNotFound(err) {
		t.Errorf("a layer was written: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(root, ".layers")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the store's mode was changed: %v %v", fi.Mode(), err)
	}

	t.Run("nosuid,nodev mount", func(t *testing.T) {
		testutil.RequiresRoot(t)
		mnt := filepath.Join(sharedDir(t), "mnt")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := unix.Unmount(mnt, 0); err != nil {
				t.Error(err)
			}
		})
		if err := os.MkdirAll(filepath.Join(mnt, "repo", ".layers"), 0o755); err != nil {
			t.Fatal(err)
		}
		shared := ducc.New(filepath.Join(mnt, "repo"))
		if _, err := shared.WriteLayer(ctx, blob); err != nil {
			t.Fatalf("write into a nosuid,nodev store: %v", err)
		}

		// A host user with a uid that owns files in a layer, or anyone
		// where the layer has group- or world-writable entries, could
		// rewrite the layer that containers run: refused.
		owned := testutil.File("home/app/run.sh", "#!/bin/sh\n")
		owned.UID, owned.GID = 1000, 1000
		open := testutil.File("etc/motd", "hi")
		open.Mode = 0o666
		tmp := testutil.Dir("tmp")
		tmp.Mode = 0o1777
		for name, e := range map[string]testutil.Entry{"owned by uid 1000": owned, "world-writable file": open, "world-writable dir": tmp} {
			blob, _ := blobOf(testutil.MustLayer(e), "")
			_, err := shared.WriteLayer(ctx, blob)
			if !errdefs.IsFailedPrecondition(err) {
				t.Errorf("%s: write into a nosuid,nodev store others reach: %v, want ErrFailedPrecondition", name, err)
				continue
			}
			t.Log(err)
			if _, err := shared.Lookup(ctx, blob.Digest); !errdefs.IsNotFound(err) {
				t.Errorf("%s: the layer was written: %v", name, err)
			}
		}
	})
}
