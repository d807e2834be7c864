package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// Issue 5 item 6: what a running container that keeps reading a file from
// a remote layer sees while the daemon restarts (SIGTERM, then kill -9),
// in both mount modes.
//
// Guaranteed, and asserted: the daemon stops on SIGTERM and starts again
// within bounds (it never hangs on a busy mount); new containers start
// after every restart; in bind mode running containers keep reading
// throughout (no process serves a bind mount). Measured, and logged as
// "restart-running: mode=... kind=...": what running containers on FUSE
// layers see (their overlay holds the old FUSE connection, which ends with
// the daemon that served it, so reads answer ENOTCONN from then on, while
// new containers get the re-mounted layers).
//
// FUSE runs twice: with the default accounting (kernel passthrough: a
// descriptor opened before the restart reads from the backing file, with
// no daemon involved) and with accounting = "bytes" (no passthrough).
func TestRestartRunning(t *testing.T) {
	for _, tc := range []struct {
		name, mode, accounting string
		separate               bool
	}{
		{"fuse", "fuse", "", false},
		{"fuse-bytes", "fuse", "bytes", false},
		{"fuse-separate", "fuse", "", true},
		{"bind", "bind", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testRestartRunning(t, tc.name, harness.Options{MountMode: tc.mode, Accounting: tc.accounting, SeparateFUSEServer: tc.separate})
		})
	}
}

// readFile is the file the running containers read: in a remote layer of
// its own, above the base layer with the probe.
const readFile = "/data/file"

func testRestartRunning(t *testing.T, name string, o harness.Options) {
	env := start(t, o)
	// Mounts that need no daemon: bind mounts, and FUSE mounts served by a
	// separate process.
	survives := o.MountMode == "bind" || o.SeparateFUSEServer
	ctx := testContext(t)
	data := testutil.File(readFile[1:], "")
	data.Body = []byte(strings.Repeat("cvmfs restart ", 64<<10/14))
	data.Size = int64(len(data.Body))
	ref, _ := push(t, env, "running", base(t), testutil.MustLayer(testutil.Dir("data"), data))
	ingest(t, ctx, env, ref)
	ctx = env.Namespace(ctx, "running-"+name)
	img, err := env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRemote(t, ctx, env, img, true, true)

	for _, kind := range []harness.StopKind{harness.Graceful, harness.Kill} {
		task, err := env.StartTask(ctx, img, harness.RunOptions{}, harness.ProbePath, "readloop", "50", readFile)
		if err != nil {
			t.Fatalf("%s: start the reader: %v", kind, err)
		}
		// Enough rounds before the restart to know reads work.
		before := waitRounds(t, task, 5, 15*time.Second)

		t0 := time.Now()
		stopErr := env.StopSnapshotter(kind)
		stopTook := time.Since(t0)
		if stopErr != nil {
			t.Errorf("%s: stop the daemon: %v (after %s)", kind, stopErr, stopTook)
		}
		// From the signal to the daemon's exit: after SIGTERM it still
		// serves the mounts it had to detach lazily for a while.
		stopping := rounds(task.Stdout())
		// While the daemon is down.
		time.Sleep(500 * time.Millisecond)
		down := rounds(task.Stdout())
		t1 := time.Now()
		if err := env.StartSnapshotter(ctx); err != nil {
			t.Fatalf("%s: start the daemon again: %v", kind, err)
		}
		startTook := time.Since(t1)
		// After the restart: at least ~20 rounds.
		after := waitRounds(t, task, len(down)+20, 15*time.Second)

		// A new container on the same image after the restart.
		newContainer := "ok"
		if res, err := env.Run(ctx, img, harness.RunOptions{}, harness.ProbePath, "cat", readFile); err != nil {
			newContainer = "failed"
			t.Errorf("%s: a new container after the restart: %v (stderr %q)", kind, err, res.Stderr)
		}
		exited := task.Exited()
		code, err := task.Stop(ctx, 15*time.Second)
		if err != nil {
			t.Errorf("%s: stop and remove the reader: %v", kind, err)
		}
		// 128+n: killed by signal n (135: SIGBUS, a page fault on a
		// mapping of a file on a dead mount).
		state := "running"
		if exited {
			state = fmt.Sprintf("exited(%d)", code)
		}

		b, s, d, a := tally(before), tally(stopping[len(before):]), tally(down[len(stopping):]), tally(after[len(down):])
		t.Logf("restart-running: mode=%s kind=%s ok_before=%d/%d ok_stopping=%d/%d ok_down=%d/%d ok_after=%d/%d held_ok_after=%d/%d errors=%s errors_down=%s new_container=%s task=%s stop=%s start=%s",
			name, kind, b.openOK, b.n, s.openOK, s.n, d.openOK, d.n, a.openOK, a.n, a.heldOK, a.n, a.errors(), tally(down[len(before):]).errors(),
			newContainer, state, stopTook.Round(time.Millisecond), startTook.Round(time.Millisecond))
		if exited {
			t.Logf("restart-running: mode=%s kind=%s reader stderr: %q", name, kind, task.Stderr())
		}

		if b.openOK == 0 || b.openOK != b.n {
			t.Errorf("%s: before the restart %d of %d reads succeeded; want all (%s)", kind, b.openOK, b.n, b.errors())
		}
		if survives {
			// No process that restarts serves these mounts: nothing a
			// restart does may reach the reader.
			if s.openOK != s.n || d.openOK != d.n || a.openOK != a.n || a.heldOK != a.n || a.n == 0 || state != "running" {
				t.Errorf("%s: %s, a running container's reads across the restart: down %d/%d ok, after %d/%d ok (held %d), task %s, errors %s; want every read to succeed",
					kind, name, d.openOK, d.n, a.openOK, a.n, a.heldOK, state, a.errors())
			}
		}
	}
}

// round is one line of probe readloop: the result of a fresh open and of
// a read on a descriptor held since the start.
type round struct{ open, held string }

// rounds parses the complete lines of probe readloop's output.
func rounds(out string) []round {
	lines := strings.Split(out, "\n")
	lines = lines[:len(lines)-1] // an incomplete last line, or ""
	rs := make([]round, 0, len(lines))
	for _, l := range lines {
		var r round
		for _, f := range strings.Fields(l) {
			if v, ok := strings.CutPrefix(f, "open="); ok {
				r.open = v
			} else if v, ok := strings.CutPrefix(f, "held="); ok {
				r.held = v
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// waitRounds waits until the task printed at least n rounds and returns
// them; it fails t if the task exits or timeout passes first.
func waitRounds(t *testing.T, task *harness.Task, n int, timeout time.Duration) []round {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs := rounds(task.Stdout())
		if len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) || task.Exited() {
			// The reader may have died (e.g. SIGBUS from a dead mount):
			// report what it saw.
			t.Logf("reader printed %d rounds of %d wanted (exited=%v, stderr %q)", len(rs), n, task.Exited(), task.Stderr())
			return rs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tallied counts a window of rounds.
type tallied struct {
	n, openOK, heldOK int
	errs              map[string]int // "open:ENOTCONN" -> rounds
}

func tally(rs []round) tallied {
	t := tallied{n: len(rs), errs: map[string]int{}}
	for _, r := range rs {
		if r.open == "ok" {
			t.openOK++
		} else {
			t.errs["open:"+r.open]++
		}
		if r.held == "ok" {
			t.heldOK++
		} else {
			t.errs["held:"+r.held]++
		}
	}
	return t
}

// errors formats the error counts stably: "open:ENOTCONN*20,held:ESTALE*3"
// or "none".
func (t tallied) errors() string {
	if len(t.errs) == 0 {
		return "none"
	}
	var out []string
	for k, n := range t.errs {
		out = append(out, fmt.Sprintf("%s*%d", k, n))
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
