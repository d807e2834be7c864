//go:build linux

package fusefs

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// ProfileSource returns the paths workloads read of layer (relative to the
// layer root, as presented), most useful first; none if nothing is known.
// A node's own usage records and a profile published in the repository
// next to the layer are such sources.
type ProfileSource func(ctx context.Context, layer digest.Digest) ([]string, error)

// Prefetch defaults.
const (
	DefaultPrefetchConcurrency = 32
	DefaultPrefetchMaxBytes    = 1 << 30
)

// prefetchBufSize is the buffer each prefetch worker (and each thread of
// the page reader) reads files with: it stays resident for the worker's
// life, prefetch-concurrency times over.
const prefetchBufSize = 256 << 10

// WithPrefetch makes every mount of a layer (unless a prefetch of the layer
// runs already) warm the layer store's cache with the files src names: each is read once from the backing tree
// (on CVMFS, fetched into the client's cache), in the background, at most
// concurrency reads at once across all layers and at most maxBytes per
// layer, by threads of the lowest CPU and I/O priority, and stops when the
// layer's last mount goes. A workload then finds the files local, and
// served at the speed of a warm store.
//
// What it does not do, and why: it does not read through the mount (the
// kernel's page cache of the mount stays cold). In accounting "reads" the
// daemon learns which files a workload reads from their first READ; pages
// read ahead into the mount's cache would hide the workload's reads from
// the accounting (and from the profiles prefetch itself feeds on).
// Prefetch reads never reach the accounting: they do not go through FUSE.
func WithPrefetch(src ProfileSource, concurrency int, maxBytes int64) Opt {
	return func(c *config) error {
		if src == nil || concurrency < 1 || maxBytes < 0 {
			return fmt.Errorf("prefetch: source %v, concurrency %d, max bytes %d: %w", src != nil, concurrency, maxBytes, errdefs.ErrInvalidArgument)
		}
		c.prefetch = src
		c.prefetchConcurrency = concurrency
		c.prefetchMaxBytes = maxBytes
		return nil
	}
}

// prefetchState is a layer's prefetch: what it read, and the files a
// workload read after prefetch had brought them in. It runs at each mount
// of the layer unless a run is under way (the layer store may have dropped
// the files since: CVMFS's cache is bounded).
type prefetchState struct {
	files, bytes, hits atomic.Int64
	running            atomic.Bool

	cancelMu sync.Mutex
	cancel   context.CancelFunc

	// life ends when the layer's last mount goes: it bounds the
	// directory prefetches of the layer (see queueDir).
	life    context.Context
	endLife context.CancelFunc
	// queueDir, with directory prefetch, queues files of the directory
	// of a path a workload read first and prefetch had not brought in;
	// nil without. Called under mu: it must not block.
	queueDir func(dir, after string, window int)

	mu sync.Mutex
	// read holds the files prefetch read (true) or has queued (false).
	read map[string]bool
	// windows holds, per directory, how many of its files the next
	// directory prefetch queues (absent: dirWindow); a directory is in
	// dirsQueuing while its files are being queued.
	windows     map[string]int
	dirsQueuing map[string]bool
}

func newPrefetchState(parent context.Context) *prefetchState {
	p := &prefetchState{read: map[string]bool{}, windows: map[string]int{}, dirsQueuing: map[string]bool{}}
	p.life, p.endLife = context.WithCancel(parent)
	return p
}

// setCancel records how to stop the run under way.
func (p *prefetchState) setCancel(cancel context.CancelFunc) {
	p.cancelMu.Lock()
	p.cancel = cancel
	p.cancelMu.Unlock()
}

// stop stops the run under way, if any, and the directory prefetches.
func (p *prefetchState) stop() {
	p.endLife()
	p.cancelMu.Lock()
	defer p.cancelMu.Unlock()
	if p.cancel != nil {
		p.cancel()
	}
}

// note records that prefetch read path (n bytes).
func (p *prefetchState) note(path string, n int64) {
	p.files.Add(1)
	p.bytes.Add(n)
	p.mu.Lock()
	p.read[path] = true
	p.mu.Unlock()
}

// workloadRead counts a hit if prefetch read path; called on a
// workload's first access of path. With directory prefetch, a path
// prefetch neither read nor queued has the files of its directory that
// follow it queued, unless they are being queued: the first time
// dirWindow of them, twice as many at each later miss in the directory,
// up to maxDirWindow.
func (p *prefetchState) workloadRead(path string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	done, ok := p.read[path]
	if done {
		p.hits.Add(1)
	}
	if ok || p.queueDir == nil || p.life.Err() != nil {
		return
	}
	dir, name := filepath.Split(path)
	dir = strings.TrimSuffix(dir, "/")
	if p.dirsQueuing[dir] {
		return
	}
	w := p.windows[dir]
	if w == 0 {
		w = dirWindow
	}
	p.windows[dir] = min(2*w, maxDirWindow)
	p.dirsQueuing[dir] = true
	p.queueDir(dir, name, w)
}

// claim marks path queued unless prefetch read or queued it already, and
// reports whether it did.
func (p *prefetchState) claim(path string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.read[path]; ok {
		return false
	}
	p.read[path] = false
	return true
}

// dirQueued ends the queuing of dir's files: a later miss in it queues
// more.
func (p *prefetchState) dirQueued(dir string) {
	p.mu.Lock()
	delete(p.dirsQueuing, dir)
	p.mu.Unlock()
}

func (p *prefetchState) stats(s *usage.LayerStats) {
	if p == nil {
		return
	}
	s.PrefetchFiles, s.PrefetchBytes, s.PrefetchHits = p.files.Load(), p.bytes.Load(), p.hits.Load()
}

// startPrefetch starts the prefetch of layer, once per layer state, with
// its own descriptor of the layer root of mt, or into mt's kernel caches
// (see pushPages). The caller holds a reservation or a mount of the layer.
func (m *Manager) startPrefetch(layer digest.Digest, mt *mount) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := m.layers[layer]
	if m.cfg.prefetch == nil || ls == nil || m.closed {
		return
	}
	p := ls.acct.prefetch.Load()
	if p == nil {
		p = newPrefetchState(m.walkCtx)
		if m.cfg.prefetchDirs {
			p.queueDir = func(dir, after string, window int) {
				m.queueDir(dirJob{layer: layer, p: p, acct: ls.acct, dir: dir, after: after, window: window})
			}
		}
		ls.acct.prefetch.Store(p)
	}
	if !p.running.CompareAndSwap(false, true) {
		return
	}
	fd, err := unix.FcntlInt(uintptr(mt.tree.rootfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		p.running.Store(false)
		return
	}
	ctx, cancel := context.WithCancel(m.walkCtx)
	p.setCancel(cancel)
	m.prefetchStart.Do(m.startPrefetchWorkers)
	m.walks.Add(1)
	go func() {
		defer m.walks.Done()
		defer p.running.Store(false)
		defer unix.Close(fd)
		defer cancel()
		m.prefetch(ctx, layer, p, fd, mt)
	}()
}

// prefetch reads the files of layer's profile from the backing tree at
// rootfd, or into the kernel's caches of mt (pushPages).
func (m *Manager) prefetch(ctx context.Context, layer digest.Digest, p *prefetchState, rootfd int, mt *mount) {
	paths, err := m.cfg.prefetch(ctx, layer)
	if err != nil {
		if !errdefs.IsNotFound(err) && ctx.Err() == nil {
			log.G(ctx).WithError(err).WithField("layer", layer).Warn("no profile to prefetch the layer with")
		}
		return
	}
	if len(paths) == 0 {
		return
	}
	// The directories the page reader listed in this run (a mount's
	// caches are new at each run: see pushPages).
	var listed sync.Map
	var wg sync.WaitGroup
	send := func(batch []string) bool {
		wg.Add(1)
		job := prefetchJob{ctx: ctx, p: p, listed: &listed, mt: mt, rootfd: rootfd, paths: batch, done: wg.Done}
		select {
		case m.prefetchJobs <- job:
			return true
		case <-ctx.Done():
			wg.Done()
			return false
		}
	}
	var batch []string
	for _, path := range paths {
		if ctx.Err() != nil || p.bytes.Load() >= m.cfg.prefetchMaxBytes {
			batch = nil
			break
		}
		if !usage.ValidProfilePath(path) {
			continue
		}
		// Through the mount, the files of one directory that follow
		// each other in the profile go to the page reader at once.
		if len(batch) > 0 && (m.pages == nil || len(batch) == maxPageBatch || filepath.Dir(batch[0]) != filepath.Dir(path)) {
			if !send(batch) {
				batch = nil
				break
			}
			batch = nil
		}
		batch = append(batch, path)
	}
	if len(batch) > 0 {
		send(batch)
	}
	// rootfd stays open until the workers are done with this layer's
	// files.
	wg.Wait()
	if ctx.Err() == nil {
		log.G(ctx).WithFields(log.Fields{"layer": layer, "files": p.files.Load(), "bytes": p.bytes.Load()}).Debug("layer prefetched")
	}
}

// maxPageBatch is the most files of one directory a prefetch job hands
// the page reader at once.
const maxPageBatch = 64

// prefetchJob is files of a layer's prefetch run, for a worker: one from
// the backing tree, or up to maxPageBatch of one directory through the
// mount mt (nil: from the backing tree even with prefetch-page-cache).
type prefetchJob struct {
	ctx    context.Context
	p      *prefetchState
	listed *sync.Map
	mt     *mount
	rootfd int
	paths  []string
	done   func()
}

// prefetchTestHook, if set, runs before each job (tests).
var prefetchTestHook atomic.Pointer[func()]

// startPrefetchWorkers starts the prefetch workers: prefetchConcurrency
// goroutines, each on a thread of its own at the lowest priorities, with a
// buffer of its own, serving the prefetch runs of every layer, until the
// Manager closes.
func (m *Manager) startPrefetchWorkers() {
	m.prefetchJobs = make(chan prefetchJob)
	if m.cfg.prefetchDirs {
		m.walks.Add(1)
		go func() {
			defer m.walks.Done()
			m.serveDirJobs()
		}()
	}
	for range m.cfg.prefetchConcurrency {
		m.walks.Add(1)
		go func() {
			defer m.walks.Done()
			// The thread takes the lowest priorities, and ends with
			// the goroutine (it stays locked to it), so that no other
			// goroutine runs on it with them.
			runtime.LockOSThread()
			lowestPriority()
			buf := make([]byte, prefetchBufSize)
			for {
				select {
				case job := <-m.prefetchJobs:
					m.prefetchFile(job, buf)
					job.done()
				case <-m.walkCtx.Done():
					return
				}
			}
		}()
	}
}

// prefetchFile reads job's files from the backing tree, or puts them in
// the kernel's caches of the mount (pushPages), unless its run was stopped
// or the layer's budget is spent.
func (m *Manager) prefetchFile(job prefetchJob, buf []byte) {
	if hook := prefetchTestHook.Load(); hook != nil {
		(*hook)()
	}
	p := job.p
	if job.ctx.Err() != nil || p.bytes.Load() >= m.cfg.prefetchMaxBytes {
		return
	}
	if m.pages != nil && job.mt != nil {
		sizes, err := m.pushPages(job.ctx, job.listed, job.mt, job.paths)
		if err == nil {
			for i, n := range sizes {
				if n >= 0 {
					p.note(job.paths[i], n)
				}
			}
		}
		return
	}
	for _, path := range job.paths {
		if n, err := readBacking(job.rootfd, path, buf); err == nil {
			p.note(path, n)
		}
	}
}

// readBacking reads the regular file rel beneath rootfd to its end, into
// buf, and returns its size.
func readBacking(rootfd int, rel string, buf []byte) (int64, error) {
	fd, err := openBackingRead(rootfd, rel)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var total int64
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return total, err
		}
		if n == 0 {
			return total, nil
		}
		total += int64(n)
	}
}

// lowestPriority gives the calling thread the lowest CPU priority (nice
// 19) and the idle I/O class, so that prefetch yields to containers.
func lowestPriority() {
	tid := unix.Gettid()
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
	const (
		ioprioWhoProcess = 1
		ioprioClassIdle  = 3
		ioprioClassShift = 13
	)
	_, _, _ = unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioClassIdle<<ioprioClassShift)
}

// pushPages puts files of mt's layer in the kernel's caches of the
// mount, paths of one directory, and returns their sizes (-1: not read):
// the page reader lists the directories on their way (once each per
// prefetch run: listed; the kernel then keeps their listings and holds an
// entry, with its attributes, for every name in them), then reads the
// files through the mount, which the daemon serves from the backing tree.
//
// The daemon does not store the pages itself (FUSE_NOTIFY_STORE), although
// that saves the READ round trip (measured, full scale right after the
// pull: small files 1.23× overlayfs stored, against 3.80× read through): a
// store waits for the lock of a page that a container's READ holds, and if
// the daemon were killed then, its storing thread could never finish (the
// READ is answered only by the next daemon, which cannot start while the
// dying one holds the root's lock). A request of the page reader, a
// process that holds no lock, is answered by the next daemon.
func (m *Manager) pushPages(ctx context.Context, listed *sync.Map, mt *mount, paths []string) ([]int64, error) {
	// The page reader lists every directory on the way: once the parent
	// is listed, so are the others.
	dir := filepath.Dir(paths[0])
	_, done := listed.Load(dir)
	sizes, err := m.pages.read(ctx, mt.mountpoint, paths, !done)
	if err == nil {
		listed.Store(dir, true)
	}
	return sizes, err
}
