package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// binaries builds cvmfs-snapshotter and cvmfsctl once per process when
// $CVMFS_TEST_BIN does not provide them.
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// Binary returns the path of one of the module's commands
// ("cvmfs-snapshotter", "cvmfsctl"): from $CVMFS_TEST_BIN when set and
// present there, otherwise built with go build into a temporary directory
// that CleanupBinaries removes.
func Binary(name string) (string, error) {
	if dir := os.Getenv("CVMFS_TEST_BIN"); dir != "" {
		p, err := filepath.Abs(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	binaries.once.Do(func() {
		binaries.dir, binaries.err = os.MkdirTemp("", "cvmfs-e2e-bin-")
		if binaries.err != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binaries.dir+"/",
			"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cmd/cvmfs-snapshotter",
			"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cmd/cvmfsctl")
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build the commands: %w\n%s", err, out)
		}
	})
	if binaries.err != nil {
		return "", binaries.err
	}
	return filepath.Join(binaries.dir, name), nil
}

// CleanupBinaries removes binaries built by Binary. Call it from TestMain.
func CleanupBinaries() {
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	if upgraded.path != "" {
		os.RemoveAll(filepath.Dir(upgraded.path))
	}
}

// upgraded builds, once per process, cvmfs-snapshotter again with another
// version string: a different build of the same tree, for upgrade tests.
var upgraded struct {
	once sync.Once
	path string
	err  error
}

// UpgradedVersion is the version string of UpgradedBinary.
const UpgradedVersion = "e2e-upgraded"

// UpgradedBinary returns cvmfs-snapshotter built from this tree with
// version UpgradedVersion, in a temporary directory that CleanupBinaries
// removes.
func UpgradedBinary() (string, error) {
	upgraded.once.Do(func() {
		dir, err := os.MkdirTemp("", "cvmfs-e2e-upgraded-")
		if err != nil {
			upgraded.err = err
			return
		}
		upgraded.path = filepath.Join(dir, "cvmfs-snapshotter")
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+UpgradedVersion, "-o", upgraded.path,
			"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cmd/cvmfs-snapshotter")
		if out, err := cmd.CombinedOutput(); err != nil {
			upgraded.err = fmt.Errorf("go build the upgraded daemon: %w\n%s", err, out)
		}
	})
	return upgraded.path, upgraded.err
}
