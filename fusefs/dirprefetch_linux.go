//go:build linux

package fusefs

import (
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
)

// Directory prefetch windows and bounds.
const (
	// dirWindow is how many files of a directory the first miss in it
	// queues; each later miss doubles it, up to maxDirWindow.
	dirWindow    = 32
	maxDirWindow = 512
	// dirPrefetchMaxFile is the largest file directory prefetch reads:
	// the wait of a fetch matters for small files, large ones are read
	// at the network's speed anyway.
	dirPrefetchMaxFile = 1 << 20
	// dirQueueLen is how many directories wait to be queued at most; a
	// miss that finds the queue full queues nothing.
	dirQueueLen = 64
)

// WithDirectoryPrefetch makes prefetch (WithPrefetch, without which it
// does nothing) also follow workloads where no profile led it: when a
// workload reads a file of a layer that prefetch had neither read nor
// queued, the files of the same directory that follow it (by name) are
// read from the layer store, dirWindow of them, twice as many at each
// later such read in the directory (up to maxDirWindow), regular files of
// at most 1 MiB only. The reads are the prefetch workers' (bounded, lowest
// priorities, never through the mount, so never counted as a workload's),
// count against the layer's prefetch budget, and stop when the layer's
// last mount goes. On CVMFS a first run without a profile then waits for
// a fetch about once a window instead of once a file, at the price of
// fetching files of those directories it may never read.
func WithDirectoryPrefetch() Opt {
	return func(c *config) error {
		c.prefetchDirs = true
		return nil
	}
}

// dirJob asks for window files of dir (relative to the layer root, ""
// for the root) that follow the name after, for prefetch state p.
type dirJob struct {
	layer  digest.Digest
	p      *prefetchState
	acct   *account
	dir    string
	after  string
	window int
}

// queueDir hands job to serveDirJobs, or drops it if too many wait. It
// never blocks: it is called on a workload's request.
func (m *Manager) queueDir(job dirJob) {
	select {
	case m.dirJobs <- job:
	default:
		go job.p.dirQueued(job.dir)
	}
}

// serveDirJobs queues, one directory at a time, the files of each
// directory job for the prefetch workers, until the Manager closes.
func (m *Manager) serveDirJobs() {
	for {
		select {
		case job := <-m.dirJobs:
			m.prefetchDir(job)
			job.p.dirQueued(job.dir)
		case <-m.walkCtx.Done():
			return
		}
	}
}

// prefetchDir queues the files of job for the prefetch workers, from a
// descriptor of the layer root of its own (the mounts may go meanwhile),
// and waits for them to be read.
func (m *Manager) prefetchDir(job dirJob) {
	ctx, p := job.p.life, job.p
	if ctx.Err() != nil || p.bytes.Load() >= m.cfg.prefetchMaxBytes {
		return
	}
	root, err := m.src.OpenLayer(ctx, job.layer)
	if err != nil {
		return
	}
	defer root.Close()
	rootfd := int(root.Fd())
	var wg sync.WaitGroup
	for _, rel := range dirFiles(rootfd, job.dir, job.after, job.window) {
		if ctx.Err() != nil || p.bytes.Load() >= m.cfg.prefetchMaxBytes {
			break
		}
		if job.acct.seen(rel) || !p.claim(rel) {
			continue
		}
		wg.Add(1)
		select {
		case m.prefetchJobs <- prefetchJob{ctx: ctx, p: p, rootfd: rootfd, paths: []string{rel}, done: wg.Done}:
		case <-ctx.Done():
			wg.Done()
		}
	}
	// root stays open until the workers are done with its files.
	wg.Wait()
}

// dirFiles returns up to n paths of the regular files of at most
// dirPrefetchMaxFile bytes in the directory dir beneath rootfd whose
// names follow after, in name order, wrapping around to the first names;
// none if dir cannot be listed. Whiteouts and the catalog marker at the
// root, which the mounts do not present as files, are left out.
func dirFiles(rootfd int, dir, after string, n int) []string {
	var fd int
	var err error
	if dir == "" {
		fd, err = unix.Openat(rootfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		fd, err = beneath.Open(rootfd, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(fd), dir)
	defer d.Close()
	entries, err := d.ReadDir(-1)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(name, whiteoutPrefix) || (dir == "" && name == catalogMarker) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	i, found := slices.BinarySearch(names, after)
	others := len(names)
	if found {
		i++
		others--
	}
	var out []string
	for k := range others {
		if len(out) == n {
			break
		}
		name := names[(i+k)%len(names)]
		var st unix.Stat_t
		if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > dirPrefetchMaxFile {
			continue
		}
		if dir != "" {
			name = dir + "/" + name
		}
		out = append(out, name)
	}
	return out
}
