//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/ducctest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// restartFixture is a daemon serving one remote layer, in the default
// configuration but with the kernel's FUSE caches off, so that every
// open, stat and listing of the readers reaches the FUSE server.
type restartFixture struct {
	t      *testing.T
	bin    string
	dir    string
	cfg    string
	d      *daemon
	mp     string // the layer's mountpoint
	chain  string // the layer's chain ID
	nFiles int
}

const restartBig = 4 << 20

func newRestartFixture(t *testing.T) *restartFixture {
	testutil.RequiresRoot(t)
	testutil.RequiresFUSE(t)
	f := &restartFixture{t: t, bin: buildDaemon(t), dir: t.TempDir(), nFiles: 200}
	t.Cleanup(func() { testutil.SweepMounts(t, f.dir) })
	repo := filepath.Join(f.dir, "repo")
	layer := layerDigest("restart")
	files := map[string]string{}
	for i := range f.nFiles {
		files[fmt.Sprintf("d%d/f%03d", i%10, i)] = fileBody(i)
	}
	lfs := filepath.Join(ducctest.WriteLayer(t, repo, layer, files, 1<<20), "layerfs")
	big := make([]byte, restartBig)
	for i := range big {
		big[i] = byte(i / 4096)
	}
	if err := os.WriteFile(filepath.Join(lfs, "big"), big, 0o755); err != nil {
		t.Fatal(err)
	}
	f.cfg = fmt.Sprintf("absolute-mountpoint = %q\nentry-timeout = \"0s\"\nattr-timeout = \"0s\"\nnegative-timeout = \"0s\"\n", repo)
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)
	sn := f.d.client(t)
	f.chain = ducctest.DiffID(layer).String()
	_, err := sn.Prepare(context.Background(), "extract-1 "+f.chain, "", snapshots.WithLabels(map[string]string{
		"containerd.io/snapshot.ref":              f.chain,
		"containerd.io/snapshot/cri.layer-digest": layer.String(),
	}))
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Prepare of a present layer = %v, want AlreadyExists", err)
	}
	mps, _ := mountutil.Under(f.d.root)
	if len(mps) != 1 {
		t.Fatalf("mounts = %+v, want the layer's", mps)
	}
	f.mp = mps[0].Mountpoint
	return f
}

func fileBody(i int) string { return fmt.Sprintf("file %d\n", i) }

// readers hammers the layer mount from n goroutines: fresh opens and full
// reads (their pages dropped after each read, so that the next read asks
// the server), stats and listings; and from a helper process, reads of a
// mapped file whose pages are dropped too (a dead mount kills such a
// reader with SIGBUS). Every error is recorded; so is the longest
// operation.
//
// The mapped file is read in another process because a thread waiting in
// a page fault on a FUSE mount is, to Go's scheduler, a running goroutine:
// faults that wait for the next daemon would hold every P of the test
// process, which could then neither reap the old daemon nor start the
// next (a container's process is not the one that starts the daemon).
type readers struct {
	log     string // the daemon's log
	stop    chan struct{}
	wg      sync.WaitGroup
	ops     atomic.Int64
	mu      sync.Mutex
	errs    []string
	longest time.Duration
	mapped  *exec.Cmd
}

// mappedReaderEnv names, in a helper process's environment, the file it
// maps and reads (see runMappedReader).
const mappedReaderEnv = "CVMFS_TEST_MAPPED_READER"

func TestMain(m *testing.M) {
	if p := os.Getenv(mappedReaderEnv); p != "" {
		os.Exit(runMappedReader(p))
	}
	os.Exit(m.Run())
}

// runMappedReader maps path and reads a byte of a random page over and
// over, dropping the page after each read, until killed. Every 50 reads it
// prints "ops 50 <longest read in ns>"; at the first wrong byte or fault it
// prints "err <what>" and returns 1.
func runMappedReader(path string) int {
	debug.SetPanicOnFault(true)
	f, err := os.Open(path)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	mapped, err := unix.Mmap(int(f.Fd()), 0, restartBig, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		fmt.Println("err", err)
		return 1
	}
	rng := rand.New(rand.NewPCG(7, 1))
	var longest time.Duration
	for n := 1; ; n++ {
		start := time.Now()
		if err := readPage(mapped, f, rng.IntN(restartBig/4096)); err != nil {
			fmt.Println("err", start.Format("15:04:05.000"), err)
			return 1
		}
		longest = max(longest, time.Since(start))
		if n%50 == 0 {
			fmt.Println("ops", 50, int64(longest))
			longest = 0
		}
	}
}

// readPage reads a byte of page of the mapping and drops the page.
func readPage(mapped []byte, f *os.File, page int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("fault reading the mapped file: %v", p)
		}
	}()
	if got := mapped[page*4096+17]; got != byte(page) {
		return fmt.Errorf("mapped page %d holds %d", page, got)
	}
	return unix.Fadvise(int(f.Fd()), int64(page*4096), 4096, unix.FADV_DONTNEED)
}

func startReaders(t *testing.T, f *restartFixture, n int) *readers {
	r := &readers{stop: make(chan struct{}), log: filepath.Join(f.dir, "daemon.log")}
	r.startMapped(t, filepath.Join(f.mp, "big"))
	for g := range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				select {
				case <-r.stop:
					return
				default:
				}
				start := time.Now()
				err := r.op(f, rng)
				r.note(start, time.Since(start), 1, err)
			}
		}()
	}
	return r
}

// note records n operations that took up to d, started at start, and err.
func (r *readers) note(start time.Time, d time.Duration, n int64, err error) {
	r.ops.Add(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
	}
	r.longest = max(r.longest, d)
}

// startMapped starts the helper process that reads path through a mapping
// (see runMappedReader) and records what it reports.
func (r *readers) startMapped(t *testing.T, path string) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mappedReaderEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.mapped = cmd
	t.Cleanup(func() { cmd.Process.Kill() })
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var n, longest int64
			if _, err := fmt.Sscanf(sc.Text(), "ops %d %d", &n, &longest); err == nil {
				r.note(time.Now(), time.Duration(longest), n, nil)
				continue
			}
			r.note(time.Now(), 0, 1, fmt.Errorf("mapped reader: %s", sc.Text()))
		}
		err := cmd.Wait()
		select {
		case <-r.stop:
		default:
			r.note(time.Now(), 0, 0, fmt.Errorf("mapped reader exited: %v", err))
		}
	}()
}

func (r *readers) op(f *restartFixture, rng *rand.Rand) error {
	i := rng.IntN(f.nFiles)
	dir := filepath.Join(f.mp, fmt.Sprintf("d%d", i%10))
	switch rng.IntN(3) {
	case 0:
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		fd, err := os.Open(p)
		if err != nil {
			return err
		}
		defer fd.Close()
		b := make([]byte, 64)
		n, err := fd.Read(b)
		if err != nil || string(b[:n]) != fileBody(i) {
			return fmt.Errorf("read %s: %q, %v", p, b[:n], err)
		}
		return unix.Fadvise(int(fd.Fd()), 0, 0, unix.FADV_DONTNEED)
	case 1:
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, fmt.Sprintf("f%03d", i)), &st); err != nil {
			return err
		}
		if st.Size != int64(len(fileBody(i))) {
			return fmt.Errorf("stat: size %d", st.Size)
		}
		return nil
	default:
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		if len(ents) != f.nFiles/10 {
			return fmt.Errorf("listing of %s: %d entries", dir, len(ents))
		}
		return nil
	}
}

// check stops the readers and fails the test on any error they saw.
func (r *readers) check(t *testing.T, what string) {
	t.Helper()
	close(r.stop)
	r.mapped.Process.Kill()
	r.wg.Wait()
	t.Logf("%s: %d reader operations, longest %v", what, r.ops.Load(), r.longest)
	if errs := r.errs; len(errs) > 0 {
		r.logDaemon(t)
		t.Fatalf("%s: %d reader errors, first: %s", what, len(errs), strings.Join(errs[:min(5, len(errs))], "; "))
	}
	if r.ops.Load() == 0 {
		t.Fatalf("%s: the readers did nothing", what)
	}
}

// logDaemon logs the daemon's warnings and errors, to explain a reader's
// error.
func (r *readers) logDaemon(t *testing.T) {
	t.Helper()
	for _, l := range strings.Split(readFile(r.log), "\n") {
		if strings.Contains(l, "level=error") || strings.Contains(l, "level=warn") || strings.Contains(l, "panic") {
			t.Log(l)
		}
	}
}

// kill kills the daemon with SIGKILL and reaps it.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.cmd.Wait()
	d.log.Close()
}

// after waits until the readers have done n more operations since the
// event, and fails the test if they saw an error.
func (r *readers) after(t *testing.T, event string, n int64) {
	t.Helper()
	r.waitOps(t, n)
	r.mu.Lock()
	defer r.mu.Unlock()
	if errs := r.errs; len(errs) > 0 {
		r.logDaemon(t)
		t.Fatalf("after %s: %d reader errors, first: %s", event, len(errs), strings.Join(errs[:min(5, len(errs))], "; "))
	}
	t.Logf("after %s: no reader error; longest operation so far %v", event, r.longest)
}

// waitOps waits until the readers have done n more operations.
func (r *readers) waitOps(t *testing.T, n int64) {
	t.Helper()
	target := r.ops.Load() + n
	deadline := time.Now().Add(30 * time.Second)
	for r.ops.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("readers stalled at %d operations", r.ops.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRestartKeepsMounts: in the default configuration, readers of a
// layer mount (8 of them, among them a reader of a mapped file) see no
// error while the daemon is stopped and started, killed and started,
// upgraded to another build, while the custody is killed under a running
// daemon, and while a Prepare runs across a restart. Every event is
// followed by reads that reach the new server.
func TestRestartKeepsMounts(t *testing.T) {
	f := newRestartFixture(t)
	ctx := context.Background()
	upgraded := filepath.Join(t.TempDir(), "cvmfs-snapshotter-v2")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=restart-test-v2", "-o", upgraded, ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the second version: %v\n%s", err, b)
	}
	r := startReaders(t, f, 8)
	r.waitOps(t, 200)

	f.d.stop(t)
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)
	r.after(t, "SIGTERM and start", 200)

	f.d.kill(t)
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)
	r.after(t, "kill -9 and start", 200)

	f.d.stop(t)
	f.d = startDaemon(t, upgraded, f.dir, f.cfg)
	r.after(t, "an upgrade", 200)
	if log := readFile(filepath.Join(f.dir, "daemon.log")); !strings.Contains(log, "layer mount taken over") {
		t.Fatalf("the upgraded daemon did not take the mount over; log:\n%s", log)
	}
	out, err := exec.Command(upgraded, "--version").Output()
	if err != nil || !strings.Contains(string(out), "restart-test-v2") {
		t.Fatalf("second build's version: %q, %v", out, err)
	}

	// The custody dies under a running daemon: the daemon starts another
	// and hands it the mount, so that a crash of the daemon right after
	// loses nothing either.
	pids := testutil.Custodies(f.dir)
	if len(pids) != 1 {
		t.Fatalf("custody processes = %v, want 1", pids)
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		now := testutil.Custodies(f.dir)
		if len(now) == 1 && now[0] != pids[0] && strings.Contains(readFile(filepath.Join(f.dir, "daemon.log")), "custody of FUSE connections restarted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new custody after the first was killed: %v", now)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.d.kill(t)
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)
	r.after(t, "the custody killed, then the daemon", 200)

	// A Prepare sent while the daemon restarts is retried by its client
	// until the new daemon answers, and is served.
	prepared := make(chan error, 1)
	f.d.stop(t)
	sock := f.d.sock
	go func() {
		var err error
		for range 100 {
			if canDial(sock) {
				_, err = (&daemon{sock: sock}).client(t).Prepare(ctx, "container-1", f.chain)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		prepared <- err
	}()
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)
	if err := <-prepared; err != nil {
		t.Fatalf("Prepare across a restart: %v", err)
	}
	r.waitOps(t, 200)
	r.check(t, "restarts")

	if mps, _ := mountutil.Under(f.d.root); len(mps) != 1 {
		t.Fatalf("mounts after the restarts = %+v, want the one layer", mps)
	}
	start := time.Now()
	f.d.stop(t)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("SIGTERM with a layer in use took %v", took)
	}
	t.Logf("SIGTERM with a layer in use returned in %v", time.Since(start))
}

// TestRestartFaults: a successor killed in the middle of taking over,
// two successors started at once, and the custody killed while no
// daemon runs. Readers see no error through the first two; through the
// last the mount ends, and the next daemon mounts the layer again.
func TestRestartFaults(t *testing.T) {
	f := newRestartFixture(t)
	r := startReaders(t, f, 4)
	r.waitOps(t, 100)

	for i, delay := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond} {
		f.d.kill(t)
		d := startDaemonNoWait(t, f.bin, f.dir, f.cfg)
		time.Sleep(delay)
		d.kill(t)
		f.d = startDaemon(t, f.bin, f.dir, f.cfg)
		r.waitOps(t, 50)
		t.Logf("successor %d killed after %v", i, delay)
	}

	// Two successors at once: one takes the root, the other exits.
	f.d.kill(t)
	a := startDaemonNoWait(t, f.bin, f.dir, f.cfg)
	b := startDaemonNoWait(t, f.bin, f.dir, f.cfg)
	exited := make(chan *daemon, 2)
	for _, d := range []*daemon{a, b} {
		go func() { d.cmd.Wait(); exited <- d }()
	}
	loser := <-exited
	f.d = a
	if loser == a {
		f.d = b
	}
	if code := loser.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("the second of two daemons on one root exited %d", code)
	}
	waitSocket(t, f.d)
	r.waitOps(t, 100)
	r.check(t, "faults")
	// The winner is waited for by the goroutine above: stop it by hand.
	f.d.cmd.Process.Kill()
	<-exited
	f.d.log.Close()
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)

	// Both holders of the connection gone: the mount ends; the next
	// daemon detaches it and mounts the layer again for new users.
	f.d.kill(t)
	for _, pid := range testutil.Custodies(f.dir) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	f.d = startDaemon(t, f.bin, f.dir, f.cfg)
	if got := readFile(filepath.Join(f.mp, "d1", "f001")); got != fileBody(1) {
		t.Fatalf("layer not mounted again after the custody and daemon died: %q", got)
	}
	if mps, _ := mountutil.Under(f.d.root); len(mps) != 1 {
		t.Fatalf("mounts = %+v, want the one layer", mps)
	}
}

// TestRestartCycles: 50 restarts, SIGTERM and kill -9 in turn, under a
// reader, leave exactly what one restart leaves: one mount, one custody
// process holding as many descriptors as after the first, no other
// process of the daemon, and no reader error.
func TestRestartCycles(t *testing.T) {
	f := newRestartFixture(t)
	r := startReaders(t, f, 2)
	var custodyFDs int
	for i := range 50 {
		if i%2 == 0 {
			f.d.stop(t)
		} else {
			f.d.kill(t)
		}
		f.d = startDaemon(t, f.bin, f.dir, f.cfg)
		r.waitOps(t, 20)
		pids := testutil.Custodies(f.dir)
		if len(pids) != 1 {
			t.Fatalf("cycle %d: custody processes %v, want 1", i, pids)
		}
		held := heldConnections(t, pids[0])
		if i == 0 {
			custodyFDs = held
		} else if held != custodyFDs {
			t.Fatalf("cycle %d: the custody holds %d FUSE devices and journals, %d after the first cycle", i, held, custodyFDs)
		}
		if mps, _ := mountutil.Under(f.d.root); len(mps) != 1 {
			t.Fatalf("cycle %d: mounts %+v, want the one layer", i, mps)
		}
	}
	r.check(t, "50 restarts")
	if n := strings.Count(readFile(filepath.Join(f.dir, "daemon.log")), "layer mount taken over"); n != 50 {
		t.Errorf("the mount was taken over %d times in 50 restarts", n)
	}
	t.Logf("the custody holds %d FUSE devices and journals", custodyFDs)
	if custodyFDs != 2 {
		t.Errorf("the custody holds %d FUSE devices and journals, want 2 (one mount)", custodyFDs)
	}
}

// heldConnections counts the FUSE devices and node journals process pid
// has open.
func heldConnections(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, _ := os.Readlink(filepath.Join(dir, fd.Name()))
		if target == "/dev/fuse" || strings.HasPrefix(target, "/memfd:cvmfs-layer-nodes") {
			n++
		}
	}
	return n
}

// TestRestartKillStorm: 300 kill -9 of the daemon, each followed by the
// next daemon, under 8 readers and the mapped reader: no reader error. A
// kill can land while the kernel copies a request into the dying daemon;
// the request must be resent to the next one, never failed.
func TestRestartKillStorm(t *testing.T) {
	f := newRestartFixture(t)
	r := startReaders(t, f, 8)
	r.waitOps(t, 100)
	const kills = 300
	for i := range kills {
		f.d.kill(t)
		f.d = startDaemon(t, f.bin, f.dir, f.cfg)
		r.waitOps(t, 30)
		if i%100 == 99 {
			r.after(t, fmt.Sprintf("%d kills", i+1), 0)
		}
	}
	r.check(t, fmt.Sprintf("%d kills", kills))
}
