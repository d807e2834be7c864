//go:build linux

package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// FullFS mounts a small ext4 filesystem (a loop device, no reserved blocks)
// under a temp dir, runs prepare on its root, then fills every free block,
// so that creating a directory or writing a file fails with ENOSPC while
// creating an entry in an existing directory still works. It is unmounted
// when t ends. Skips (fails in CI) unless root with mkfs.ext4 and loop
// devices.
func FullFS(t testing.TB, prepare func(root string)) string {
	t.Helper()
	RequiresRoot(t)
	mkfs := RequiresBinary(t, "mkfs.ext4")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 2<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		Skip(t, "needs a loop device: mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	if prepare != nil {
		prepare(mnt)
	}
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{64 << 10, 1 << 10, 1} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill: %v", err)
				}
				break
			}
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill: %v", err)
	}
	// Blocks held back by delayed allocation may come free at the sync:
	// take what is left with directories until none can be made.
	for i := 0; ; i++ {
		err := os.Mkdir(filepath.Join(mnt, fmt.Sprintf("fill-%d", i)), 0o700)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil || i > 100_000 {
			t.Fatalf("fill with directories: %v (after %d)", err, i)
		}
	}
	if err := os.Mkdir(filepath.Join(mnt, "probe"), 0o700); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("mkdir on the full filesystem = %v, want ENOSPC", err)
	}
	return mnt
}
