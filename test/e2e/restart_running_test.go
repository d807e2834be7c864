package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// TestRestartRunning: a running container that keeps reading a file from
// a remote layer, with a fresh open and a read on a descriptor held since
// it started, while running the reader binary itself from a remote layer
// (a dead mount kills it with SIGBUS), sees no error while the daemon is
// stopped and started, killed and started, upgraded to another build, or
// has its custody killed and is then killed itself; in every mount mode.
// New containers start after every event. The pause (the longest time
// between two rounds of the reader) is logged as "restart-running: ...".
//
// FUSE runs with the default accounting ("reads"), with "bytes", and with
// a separate FUSE server.
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

// restartEvent is what happens to the daemon while a container runs.
type restartEvent struct {
	name string
	// stop ends the daemon (and whatever else the event kills); start
	// starts it again.
	stop  func(env *harness.Env) error
	start func(ctx context.Context, env *harness.Env) error
}

func restartEvents(t *testing.T, o harness.Options) []restartEvent {
	start := func(ctx context.Context, env *harness.Env) error { return env.StartSnapshotter(ctx) }
	events := []restartEvent{
		{"sigterm", func(env *harness.Env) error { return env.StopSnapshotter(harness.Graceful) }, start},
		// kill -9 is also what the kernel's OOM killer does.
		{"kill", func(env *harness.Env) error { return env.StopSnapshotter(harness.Kill) }, start},
	}
	if o.MountMode == "bind" || o.SeparateFUSEServer {
		return events
	}
	upgraded, err := harness.UpgradedBinary()
	if err != nil {
		t.Fatal(err)
	}
	return append(events,
		restartEvent{"upgrade", func(env *harness.Env) error { return env.StopSnapshotter(harness.Graceful) },
			func(ctx context.Context, env *harness.Env) error { return env.StartSnapshotterBinary(ctx, upgraded) }},
		restartEvent{"custody-kill", func(env *harness.Env) error {
			if err := env.KillCustody(); err != nil {
				return err
			}
			return env.StopSnapshotter(harness.Kill)
		}, start},
	)
}

// readFile is the file the running containers read: in a remote layer of
// its own, above the base layer with the probe.
const readFile = "/data/file"

func testRestartRunning(t *testing.T, name string, o harness.Options) {
	env := start(t, o)
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

	for _, ev := range restartEvents(t, o) {
		task, err := env.StartTask(ctx, img, harness.RunOptions{}, harness.ProbePath, "readloop", "50", readFile)
		if err != nil {
			t.Fatalf("%s: start the reader: %v", ev.name, err)
		}
		// Enough rounds before the event to know reads work.
		before := waitRounds(t, task, 5, 15*time.Second)

		t0 := time.Now()
		stopErr := ev.stop(env)
		stopTook := time.Since(t0)
		if stopErr != nil {
			t.Errorf("%s: stop the daemon: %v (after %s)", ev.name, stopErr, stopTook)
		}
		stopping := rounds(task.Stdout())
		// While the daemon is down.
		time.Sleep(500 * time.Millisecond)
		down := rounds(task.Stdout())
		t1 := time.Now()
		if err := ev.start(ctx, env); err != nil {
			t.Fatalf("%s: start the daemon again: %v", ev.name, err)
		}
		startTook := time.Since(t1)
		// After the restart: at least ~20 rounds.
		after := waitRounds(t, task, len(down)+20, 15*time.Second)
		pause := task.LongestSilence()

		// A new container on the same image after the restart.
		newContainer := "ok"
		if res, err := env.Run(ctx, img, harness.RunOptions{}, harness.ProbePath, "cat", readFile); err != nil {
			newContainer = "failed"
			t.Errorf("%s: a new container after the restart: %v (stderr %q)", ev.name, err, res.Stderr)
		}
		exited := task.Exited()
		code, err := task.Stop(ctx, 15*time.Second)
		if err != nil {
			t.Errorf("%s: stop and remove the reader: %v", ev.name, err)
		}
		// 128+n: killed by signal n (135: SIGBUS, a page fault on a
		// mapping of a file on a dead mount).
		state := "running"
		if exited {
			state = fmt.Sprintf("exited(%d)", code)
		}

		b, s, d, a := tally(before), tally(stopping[len(before):]), tally(down[len(stopping):]), tally(after[len(down):])
		t.Logf("restart-running: mode=%s kind=%s ok_before=%d/%d ok_stopping=%d/%d ok_down=%d/%d ok_after=%d/%d held_ok_after=%d/%d errors=%s errors_down=%s new_container=%s task=%s stop=%s start=%s pause=%s",
			name, ev.name, b.openOK, b.n, s.openOK, s.n, d.openOK, d.n, a.openOK, a.n, a.heldOK, a.n, a.errors(), tally(down[len(before):]).errors(),
			newContainer, state, stopTook.Round(time.Millisecond), startTook.Round(time.Millisecond), pause.Round(time.Millisecond))
		if exited {
			t.Logf("restart-running: mode=%s kind=%s reader stderr: %q", name, ev.name, task.Stderr())
		}

		if b.openOK == 0 || b.openOK != b.n {
			t.Errorf("%s: before the restart %d of %d reads succeeded; want all (%s)", ev.name, b.openOK, b.n, b.errors())
		}
		if s.openOK != s.n || d.openOK != d.n || a.openOK != a.n || a.heldOK != a.n || a.n == 0 || state != "running" {
			t.Errorf("%s: %s, a running container's reads across the restart: down %d/%d ok, after %d/%d ok (held %d), task %s, errors %s; want every read to succeed",
				ev.name, name, d.openOK, d.n, a.openOK, a.n, a.heldOK, state, a.errors())
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
