//go:build linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/hanwen/go-fuse/v2/fuse"
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
	DefaultPrefetchConcurrency = 16
	DefaultPrefetchMaxBytes    = 1 << 30
)

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
	// stored counts the files whose pages were stored in a mount's cache
	// (pushPages) rather than read through it.
	stored  atomic.Int64
	running atomic.Bool

	cancelMu sync.Mutex
	cancel   context.CancelFunc

	mu   sync.Mutex
	read map[string]struct{}
}

// setCancel records how to stop the run under way.
func (p *prefetchState) setCancel(cancel context.CancelFunc) {
	p.cancelMu.Lock()
	p.cancel = cancel
	p.cancelMu.Unlock()
}

// stop stops the run under way, if any.
func (p *prefetchState) stop() {
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
	p.read[path] = struct{}{}
	p.mu.Unlock()
}

// workloadRead counts a hit if prefetch read path; called on a
// workload's first access of path.
func (p *prefetchState) workloadRead(path string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	_, ok := p.read[path]
	p.mu.Unlock()
	if ok {
		p.hits.Add(1)
	}
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
		p = &prefetchState{read: map[string]struct{}{}}
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
	for _, path := range paths {
		if ctx.Err() != nil || p.bytes.Load() >= m.cfg.prefetchMaxBytes {
			break
		}
		if !usage.ValidProfilePath(path) {
			continue
		}
		wg.Add(1)
		job := prefetchJob{ctx: ctx, p: p, listed: &listed, mt: mt, rootfd: rootfd, path: path, done: wg.Done}
		select {
		case m.prefetchJobs <- job:
		case <-ctx.Done():
			wg.Done()
		}
	}
	// rootfd stays open until the workers are done with this layer's
	// files.
	wg.Wait()
	if ctx.Err() == nil {
		log.G(ctx).WithFields(log.Fields{"layer": layer, "files": p.files.Load(), "bytes": p.bytes.Load()}).Debug("layer prefetched")
	}
}

// prefetchJob is one file of a layer's prefetch run, for a worker.
type prefetchJob struct {
	ctx    context.Context
	p      *prefetchState
	listed *sync.Map
	mt     *mount
	rootfd int
	path   string
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
	for range m.cfg.prefetchConcurrency {
		m.walks.Add(1)
		go func() {
			defer m.walks.Done()
			// The thread takes the lowest priorities, and ends with
			// the goroutine (it stays locked to it), so that no other
			// goroutine runs on it with them.
			runtime.LockOSThread()
			lowestPriority()
			buf := make([]byte, 1<<20)
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

// prefetchFile reads job's file from the backing tree, or puts it in the
// kernel's caches of the mount (pushPages), unless its run was stopped or
// the layer's budget is spent.
func (m *Manager) prefetchFile(job prefetchJob, buf []byte) {
	if hook := prefetchTestHook.Load(); hook != nil {
		(*hook)()
	}
	p := job.p
	if job.ctx.Err() != nil || p.bytes.Load() >= m.cfg.prefetchMaxBytes {
		return
	}
	var n int64
	var err error
	if m.pages != nil {
		n, err = m.pushPages(job.ctx, p, job.listed, job.mt, job.rootfd, job.path, buf)
	} else {
		n, err = readBacking(job.rootfd, job.path, buf)
	}
	if err == nil {
		p.note(job.path, n)
	}
}

// readBacking reads the regular file rel beneath rootfd to its end, into
// buf, and returns its size.
func readBacking(rootfd int, rel string, buf []byte) (int64, error) {
	fd, err := openBacking(rootfd, rel)
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

// maxStored is the largest file pushPages stores itself. A larger one is
// read through the mount: the kernel then reads it ahead in requests of
// maxReadReply, several at once, which the daemon serves in parallel,
// where storing is one copy after another on a thread of the lowest
// priority (measured, a 512 MiB file right after the pull: read through
// the mount, 0.96× overlayfs' first read; stored, 3.39×).
const maxStored = maxReadReply

// errTooLargeToStore says a file is larger than maxStored.
var errTooLargeToStore = errors.New("file too large to store in the page cache from the daemon")

// pushPages puts the file path of mt's layer in the kernel's caches of the
// mount and returns its size. The page reader lists the directories on its
// way through the mount (the kernel then holds a node for every entry, with
// its attributes); the daemon reads the file from the backing tree at
// rootfd and stores its pages in the node's cache (FUSE_NOTIFY_STORE): no
// round trip per file. If the kernel holds no node for the file (it
// dropped it, or the listing was not a READDIRPLUS), or refuses the store,
// the page reader reads the file through the mount instead.
func (m *Manager) pushPages(ctx context.Context, p *prefetchState, listed *sync.Map, mt *mount, rootfd int, path string, buf []byte) (int64, error) {
	// The page reader lists every directory on the way: once the parent
	// is listed, so are the others.
	if dir := filepath.Dir(path); !mapHas(listed, dir) {
		if err := m.pages.list(ctx, mt.mountpoint, path); err != nil {
			return 0, err
		}
		listed.Store(dir, true)
	}
	if k, ok := mt.ids.liveID(path); ok {
		if n, err := storePages(mt.server, k, rootfd, path, buf); err == nil {
			p.stored.Add(1)
			return n, nil
		}
	}
	return m.pages.read(ctx, mt.mountpoint, path)
}

func mapHas(m *sync.Map, key string) bool {
	_, ok := m.Load(key)
	return ok
}

// storePages reads the regular file rel beneath rootfd into buf, chunk by
// chunk, and stores each chunk in the cache of kernel node k. A file
// larger than maxStored is left alone (errTooLargeToStore).
func storePages(s *fuse.Server, k uint64, rootfd int, rel string, buf []byte) (int64, error) {
	fd, err := openBacking(rootfd, rel)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Size > maxStored {
		return 0, errTooLargeToStore
	}
	var off int64
	for {
		n, err := preadFull(fd, buf, off)
		if err != nil {
			return off, err
		}
		if n == 0 {
			return off, nil
		}
		if st := s.InodeNotifyStoreCache(k, off, buf[:n]); !st.Ok() {
			return off, fmt.Errorf("store the pages of %s: %w", rel, syscall.Errno(st))
		}
		off += int64(n)
		if n < len(buf) {
			return off, nil
		}
	}
}
