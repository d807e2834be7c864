package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.CleanupBinaries()
	os.Exit(code)
}

// sparseSize is the size of the corpus' sparse file.
const sparseSize = 256 << 20

// fixtures are built once per test binary: the probe takes a few seconds
// to compile.
var fixtures struct {
	once sync.Once
	err  error
	base []byte
	app  [][]byte
}

func base(t *testing.T) []byte {
	t.Helper()
	fixtures.once.Do(func() {
		dir, err := os.MkdirTemp("", "cvmfs-e2e-probe-")
		if err != nil {
			fixtures.err = err
			return
		}
		defer os.RemoveAll(dir)
		probe, err := harness.BuildProbe(dir)
		if err != nil {
			fixtures.err = err
			return
		}
		fixtures.base = harness.BaseLayer(probe)
		fixtures.app = harness.AppLayers(20, 64<<10)
	})
	if fixtures.err != nil {
		t.Fatal(fixtures.err)
	}
	return fixtures.base
}

// start checks the requirements and starts an environment that is torn
// down (and its logs shown on failure) when t ends.
func start(t *testing.T, o harness.Options) *harness.Env {
	t.Helper()
	if testutil.UnitOnly() {
		t.Skip("CVMFS_UNIT_ONLY is set")
	}
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	testutil.RequiresBinary(t, "runc")
	if o.Containerd == harness.Containerd2 {
		if err := harness.Containerd2Available(); err != nil {
			testutil.Skip(t, "needs containerd 2: %v", err)
		}
	} else if err := harness.Containerd16Available(); err != nil {
		testutil.Skip(t, "needs containerd 1.6 (apt-get install containerd): %v", err)
	}
	base(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := harness.New(ctx, dir, o)
	if err != nil {
		t.Fatalf("start environment: %v\n%s", err, tails(dir))
	}
	t.Cleanup(func() {
		left, err := env.Close(context.Background())
		if len(left) > 0 {
			t.Errorf("mounts left under %s after teardown: %v", dir, left)
		}
		if err != nil {
			t.Errorf("teardown: %v", err)
		}
		if t.Failed() {
			t.Logf("logs:\n%s", tails(dir))
		}
	})
	return env
}

// tails returns the last lines of the daemons' logs in dir.
func tails(dir string) string {
	var b strings.Builder
	for _, name := range []string{"snapshotter.log", "containerd.log"} {
		data, _ := os.ReadFile(dir + "/" + name)
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", name, len(lines), strings.Join(lines, "\n"))
	}
	return b.String()
}
