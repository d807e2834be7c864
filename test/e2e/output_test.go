package e2e

import (
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/pattern"
)

// slowWriter stands for a loaded test process (the race detector on a
// cold machine): it takes its time over every write.
type slowWriter struct{ delay time.Duration }

func (w slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.delay)
	return len(p), nil
}

// A container's output arrives whole, whatever its size and however slowly
// the test reads it: the harness waits for its copy of the output to end
// before it deletes the task (deleting closes the client's end of the
// output FIFOs, and what is still in them is lost).
func TestContainerOutputWhole(t *testing.T) {
	env := start(t, harness.Options{Containerd: harness.Containerd2})
	ctx := testContext(t)
	ref, _ := push(t, env, "output", base(t))
	ctx = env.Namespace(ctx, "output")
	img, err := env.Pull(ctx, ref, harness.PullOptions{Snapshotter: "overlayfs", NoLabels: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		stdout, stderr int64
		reader         io.Writer
	}{
		{"8MiB", 8 << 20, 1 << 20, nil},
		{"4MiB-slow-reader", 4 << 20, 256 << 10, slowWriter{15 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := harness.RunOptions{Snapshotter: "overlayfs", Stdout: tc.reader}
			res, err := env.Run(ctx, img, o, harness.ProbePath, "emit", strconv.FormatInt(tc.stdout, 10), strconv.FormatInt(tc.stderr, 10))
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if err := pattern.Check([]byte(res.Stdout), tc.stdout); err != nil {
				t.Errorf("stdout: %v", err)
			}
			if err := pattern.Check([]byte(res.Stderr), tc.stderr); err != nil {
				t.Errorf("stderr: %v", err)
			}
		})
	}
}
