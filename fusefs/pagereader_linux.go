//go:build linux

package fusefs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

// WithPrefetchPages makes prefetch, under accounting "reads", put the files
// of a layer's profile in the kernel's caches of the layer's mount, not
// only in the layer store's: a helper process lists, through the mount,
// the directories on the way to each file (the kernel then keeps their
// listings and an entry for every name in them) and reads the file through
// the mount. A container's first run then finds them where a warm run
// does. The price: the container's reads of those files never reach the
// daemon, so they are not counted (nor are prefetch hits); the helper's
// requests are not counted either. Under "open" and "bytes" prefetch warms
// the layer store only, as without this option (passthrough reads the
// backing file's pages; "bytes" counts every byte a workload reads).
//
// The helper is started with argv, which must run RunPageReader on its
// standard input and output: a request through the mount by the daemon
// itself could not finish if the daemon were killed during it, and the
// daemon's lock would stay held by the dying process. The daemon tells
// the helper's requests apart by the thread IDs it reports.
func WithPrefetchPages(argv []string) Opt {
	return func(c *config) error {
		if len(argv) == 0 {
			return fmt.Errorf("prefetch pages: no helper command: %w", errdefs.ErrInvalidArgument)
		}
		c.pageReader = append([]string(nil), argv...)
		return nil
	}
}

// pageRequest asks the page reader to read the files paths beneath mount,
// first listing, with List, every directory on the way to the first.
type pageRequest struct {
	ID    uint64   `json:"id"`
	Mount string   `json:"mount"`
	Paths []string `json:"paths"`
	List  bool     `json:"list,omitempty"`
}

// pageReply answers a pageRequest, with the size of each file read (-1:
// not read), or (ID 0) announces the reader's threads.
type pageReply struct {
	ID    uint64   `json:"id"`
	Sizes []int64  `json:"sizes,omitempty"`
	Error string   `json:"error,omitempty"`
	TIDs  []uint32 `json:"tids,omitempty"`
}

// RunPageReader reads files through layer mounts for the daemon's
// prefetch: requests come from in, one JSON object per line, and every
// request is answered on out the same way. Each of workers threads first
// takes the lowest CPU and I/O priority, and the reader announces their
// thread IDs before reading anything. A path is resolved beneath its mount
// without following links, and only a regular file is read; a listing
// reads every directory on the way to the path, so that the kernel caches
// their listings and holds a node for each of their entries. It returns
// when in ends.
func RunPageReader(in io.Reader, out io.Writer, workers int) error {
	if workers < 1 {
		return fmt.Errorf("page reader: %d workers: %w", workers, errdefs.ErrInvalidArgument)
	}
	var (
		outMu sync.Mutex
		enc   = json.NewEncoder(out)
		jobs  = make(chan pageRequest)
		tids  = make(chan uint32, workers)
		wg    sync.WaitGroup
	)
	reply := func(r pageReply) error {
		outMu.Lock()
		defer outMu.Unlock()
		return enc.Encode(r)
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Locked for good: the requests of this goroutine's reads
			// carry this thread's ID, which the daemon knows.
			runtime.LockOSThread()
			lowestPriority()
			tids <- uint32(unix.Gettid())
			buf := make([]byte, prefetchBufSize)
			for req := range jobs {
				r := pageReply{ID: req.ID}
				r.Sizes, r.Error = throughMount(req, buf)
				if err := reply(r); err != nil {
					return
				}
			}
		}()
	}
	hello := pageReply{}
	for range workers {
		hello.TIDs = append(hello.TIDs, <-tids)
	}
	err := reply(hello)
	sc := bufio.NewScanner(in)
	// A request names up to maxPageBatch paths of any length.
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for err == nil && sc.Scan() {
		var req pageRequest
		if err = json.Unmarshal(sc.Bytes(), &req); err == nil && req.ID == 0 {
			err = errors.New("no id")
		}
		if err != nil {
			err = fmt.Errorf("page reader: malformed request %q: %w", sc.Bytes(), err)
			break
		}
		jobs <- req
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		err = sc.Err()
	}
	return err
}

// throughMount serves req beneath req.Mount: with req.List it lists every
// directory on the way to the first path (a listing the kernel has kept
// costs no request); then it reads each regular file of req.Paths to its
// end. It returns their sizes (-1 for a file it could not read), or why it
// could not start.
func throughMount(req pageRequest, buf []byte) ([]int64, string) {
	root, err := unix.Open(req.Mount, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err.Error()
	}
	defer unix.Close(root)
	if req.List && len(req.Paths) > 0 {
		for dir := filepath.Dir(req.Paths[0]); ; dir = filepath.Dir(dir) {
			if dir == "." {
				dir = ""
			}
			listDir(root, dir, buf)
			if dir == "" {
				break
			}
		}
	}
	sizes := make([]int64, len(req.Paths))
	for i, p := range req.Paths {
		n, err := readBacking(root, p, buf)
		if err != nil {
			n = -1
		}
		sizes[i] = n
	}
	return sizes, ""
}

// listDir reads the entries of the directory rel beneath root to the end,
// into buf, and drops them; errors are ignored (a missing directory leaves
// nothing to warm).
func listDir(root int, rel string, buf []byte) {
	fd, err := beneath.Open(root, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
	}
}

// pageReader is the daemon's side of the helper that runs RunPageReader:
// started at the first read, started again after it died.
type pageReader struct {
	argv []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	next    uint64
	pending map[uint64]chan pageReply
	closed  bool

	// tids are the helper's reading threads, read on every READ.
	tids atomic.Pointer[map[uint32]struct{}]
}

// errReaderGone is the error of reads pending when the helper exits.
var errReaderGone = errors.New("prefetch page reader exited")

// read reads paths beneath mount through the helper, listing first, with
// list, the directories on the way to the first, and returns their sizes
// (-1: not read).
func (r *pageReader) read(ctx context.Context, mount string, paths []string, list bool) ([]int64, error) {
	rep, err := r.do(ctx, pageRequest{Mount: mount, Paths: paths, List: list})
	if err != nil {
		return nil, err
	}
	if len(rep.Sizes) != len(paths) {
		return nil, fmt.Errorf("prefetch page reader answered %d sizes for %d files", len(rep.Sizes), len(paths))
	}
	return rep.Sizes, nil
}

// do sends req and waits for its reply.
func (r *pageReader) do(ctx context.Context, req pageRequest) (pageReply, error) {
	ch, err := r.send(ctx, req)
	if err != nil {
		return pageReply{}, err
	}
	select {
	case rep := <-ch:
		if rep.Error != "" {
			return rep, errors.New(rep.Error)
		}
		return rep, nil
	case <-ctx.Done():
		// The helper finishes the reads; its reply is dropped.
		return pageReply{}, ctx.Err()
	}
}

// send starts the helper if it does not run and sends it a request.
func (r *pageReader) send(ctx context.Context, req pageRequest) (chan pageReply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errReaderGone
	}
	if r.cmd == nil {
		if err := r.startLocked(ctx); err != nil {
			return nil, err
		}
	}
	r.next++
	ch := make(chan pageReply, 1)
	r.pending[r.next] = ch
	req.ID = r.next
	b, err := json.Marshal(req)
	if err == nil {
		_, err = r.stdin.Write(append(b, '\n'))
	}
	if err != nil {
		delete(r.pending, r.next)
		return nil, fmt.Errorf("prefetch page reader: %w", err)
	}
	return ch, nil
}

// startLocked starts the helper and waits for its threads; r.mu held.
func (r *pageReader) startLocked(ctx context.Context) error {
	cmd := exec.Command(r.argv[0], r.argv[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start prefetch page reader: %w", err)
	}
	dec := json.NewDecoder(stdout)
	var hello pageReply
	if err := dec.Decode(&hello); err != nil || len(hello.TIDs) == 0 {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("prefetch page reader did not announce its threads: %v", err)
	}
	tids := make(map[uint32]struct{}, len(hello.TIDs))
	for _, t := range hello.TIDs {
		tids[t] = struct{}{}
	}
	r.tids.Store(&tids)
	r.cmd, r.stdin, r.pending = cmd, stdin, map[uint64]chan pageReply{}
	log.G(ctx).WithField("pid", cmd.Process.Pid).Debug("prefetch page reader started")
	go r.replies(cmd, dec)
	return nil
}

// replies hands the helper's replies to their readers until it exits,
// then fails the reads still pending.
func (r *pageReader) replies(cmd *exec.Cmd, dec *json.Decoder) {
	for {
		var rep pageReply
		if err := dec.Decode(&rep); err != nil {
			break
		}
		r.mu.Lock()
		if ch, ok := r.pending[rep.ID]; ok {
			delete(r.pending, rep.ID)
			ch <- rep
		}
		r.mu.Unlock()
	}
	cmd.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, ch := range r.pending {
		ch <- pageReply{ID: id, Error: errReaderGone.Error()}
	}
	r.pending = nil
	if r.cmd == cmd {
		r.cmd, r.stdin = nil, nil
	}
	r.tids.Store(nil)
}

// fromReader reports whether the request of ctx comes from the helper.
func (r *pageReader) fromReader(ctx context.Context) bool {
	if r == nil {
		return false
	}
	tids := r.tids.Load()
	if tids == nil {
		return false
	}
	c, ok := ctx.(*fuse.Context)
	if !ok {
		return false
	}
	_, ok = (*tids)[c.Caller.Pid]
	return ok
}

// close ends the helper: its input closes, and it exits once its reads
// in flight are done.
func (r *pageReader) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.stdin != nil {
		r.stdin.Close()
	}
}
