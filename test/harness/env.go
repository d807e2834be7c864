package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/adminapi"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/cvmfslike"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Options choose what an Env runs.
type Options struct {
	// Containerd is the containerd flavour (default Containerd2).
	Containerd Containerd
	// CRI keeps containerd's CRI plugin, configured for our snapshotter
	// with disable_snapshot_annotations = false.
	CRI bool
	// MountMode, Accounting: the daemon's mount-mode and accounting keys
	// ("" keeps its defaults).
	MountMode  string
	Accounting string
	// Metrics serves the daemon's /metrics and /stats on a loopback port.
	Metrics bool
	// SeparateFUSEServer sets fuse-server = "separate": the FUSE mounts live
	// in a detached process that outlives daemon restarts. Close stops it.
	SeparateFUSEServer bool
	// ContainerdConfig, if not empty, is containerd's configuration file
	// instead of the generated one (a shipped snippet between the parts
	// ContainerdLocalConfig returns, say), with these replaced: $T (the
	// environment's directory), $SNAP (the daemon's socket), $REG (the
	// registry's host:port), $NAME (SnapshotterName).
	ContainerdConfig string
	// SnapshotterConfig, if not empty, is the daemon's configuration file
	// instead of the generated one, with $T and $REPO (the repository
	// directory) replaced. MountMode, Accounting and Metrics are then not
	// applied; set SeparateFUSEServer if it asks for a separate FUSE
	// server, so that Close stops it.
	SnapshotterConfig string
	// ProfileFlushInterval is the daemon's profile-flush-interval ("" keeps
	// its default).
	ProfileFlushInterval string
	// CVMFSLike serves the repository to the daemon through a
	// cvmfslike.Store (a FUSE mount that behaves like a cvmfs2 client:
	// nosuid, no passthrough, an OPEN per open, magic xattrs, catalog
	// reloads) instead of a plain directory. Layers are then written to
	// StoreDir and published by Env.Publish (Ingest does it).
	CVMFSLike bool
	// CVMFSMissDelay is the store's delay on the first open of each file
	// (a cache miss fetched over the network), with CVMFSLike.
	CVMFSMissDelay time.Duration
	// NoPrefetch sets prefetch = false; PrefetchConcurrency, if not 0,
	// prefetch-concurrency; PrefetchPageCache sets prefetch-page-cache;
	// PrefetchDirectories sets prefetch-directories.
	NoPrefetch          bool
	PrefetchConcurrency int
	PrefetchPageCache   bool
	PrefetchDirectories bool
	// CVMFSClaimOwnership presents every file of the store as owned by
	// uid:gid 999:995, as a client running as the cvmfs user with
	// CVMFS_CLAIM_OWNERSHIP=yes does, with CVMFSLike.
	CVMFSClaimOwnership bool
}

// Env is one running stack in its own directory. Its methods are safe for
// concurrent use; Close tears it down.
type Env struct {
	// Dir is the temporary directory everything lives in.
	Dir string
	// RepoDir is the DUCC-shaped layer store the daemon serves.
	RepoDir string
	// StoreDir is where layers are written: RepoDir, or with
	// Options.CVMFSLike the directory the store serves at RepoDir.
	StoreDir string
	// Repo is StoreDir as a ducc.Repo: write layers through it, then
	// Publish.
	Repo *ducc.Repo
	// Store is the CVMFS-like store mounted at RepoDir, with
	// Options.CVMFSLike (else nil).
	Store *cvmfslike.Store
	// Registry is the in-process registry.
	Registry *testutil.Registry
	// Client talks to containerd.
	Client *containerd.Client
	// ContainerdSock, SnapshotterSock are the two gRPC sockets.
	ContainerdSock, SnapshotterSock string
	// MetricsAddr is the daemon's HTTP address when Options.Metrics.
	MetricsAddr string
	// Options the environment was started with.
	Options Options

	snap, ctrd *process

	mu         sync.Mutex
	namespaces map[string]bool
	closed     bool
}

// New starts an environment in dir (which must exist and be empty):
// registry, daemon, containerd. On error everything started is stopped.
func New(ctx context.Context, dir string, o Options) (_ *Env, err error) {
	e := &Env{
		Dir:        dir,
		RepoDir:    filepath.Join(dir, "repo"),
		StoreDir:   filepath.Join(dir, "repo"),
		Options:    o,
		namespaces: map[string]bool{},
	}
	if o.CVMFSLike {
		e.StoreDir = filepath.Join(dir, "repo-store")
	}
	e.Repo = ducc.New(e.StoreDir)
	defer func() {
		if err != nil {
			e.Close(context.WithoutCancel(ctx))
		}
	}()
	for _, d := range []string{e.RepoDir, e.StoreDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if o.CVMFSLike {
		opts := []cvmfslike.Opt{cvmfslike.WithRepository(repoName), cvmfslike.WithMissDelay(o.CVMFSMissDelay)}
		if o.CVMFSClaimOwnership {
			opts = append(opts, cvmfslike.WithClaimOwnership(999, 995))
		}
		if e.Store, err = cvmfslike.Mount(ctx, e.StoreDir, e.RepoDir, opts...); err != nil {
			return nil, err
		}
	}
	e.Registry = testutil.StartRegistry()
	e.snap, e.SnapshotterSock, e.MetricsAddr, err = startSnapshotter(ctx, dir, e.RepoDir, o)
	if err != nil {
		return nil, err
	}
	e.ctrd, e.ContainerdSock, err = startContainerd(ctx, o.Containerd, dir, e.SnapshotterSock, e.Registry.Host(), o.CRI, o.ContainerdConfig)
	if err != nil {
		return nil, err
	}
	e.Client, err = containerd.New(e.ContainerdSock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Ingest writes ref's layers into the repository with cvmfsctl ingest and
// returns its output.
func (e *Env) Ingest(ctx context.Context, ref string) (string, error) {
	bin, err := Binary("cvmfsctl")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, bin, "ingest", ref, "--repo", e.StoreDir, "--insecure").CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("cvmfsctl ingest %s: %w\n%s", ref, err, out)
	}
	e.Publish()
	return string(out), nil
}

// Publish makes what was written to StoreDir visible at RepoDir: with
// Options.CVMFSLike, a catalog reload of the store (removed paths are
// gone for the daemon too); otherwise nothing.
func (e *Env) Publish() {
	if e.Store != nil {
		e.Store.Reload()
	}
}

// SnapshotterLog returns the daemon's log so far.
func (e *Env) SnapshotterLog() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "snapshotter.log"))
	return string(b)
}

// ContainerdLog returns containerd's log so far.
func (e *Env) ContainerdLog() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "containerd.log"))
	return string(b)
}

// Close tears the environment down: containers and tasks in every
// namespace the Env handed out, containerd, the daemon (which unmounts its
// layers), the registry. It then returns the mounts still left under Dir
// and lazily unmounts them. Safe to call twice.
func (e *Env) Close(ctx context.Context) (leftovers []string, err error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, nil
	}
	e.closed = true
	nss := make([]string, 0, len(e.namespaces))
	for ns := range e.namespaces {
		nss = append(nss, ns)
	}
	e.mu.Unlock()

	var errs []error
	if e.Client != nil {
		for _, ns := range nss {
			errs = append(errs, e.removeContainers(ctx, ns))
		}
		e.Client.Close()
	}
	errs = append(errs, e.ctrd.stop(15*time.Second), e.snap.stop(20*time.Second))
	if e.Options.SeparateFUSEServer {
		errs = append(errs, e.stopFUSEServer(ctx))
	}
	// The daemon leaves its mounts to its custody when it stops; with no
	// daemon connected, the custody unmounts them when it stops.
	errs = append(errs, testutil.TerminateCustodies(e.Dir))
	if e.Store != nil {
		// After the daemon and its custody: their mounts stack on it.
		errs = append(errs, e.Store.Close())
	}
	if e.Registry != nil {
		e.Registry.Close()
	}
	ms, merr := mountutil.Under(e.Dir)
	errs = append(errs, merr)
	for _, m := range ms {
		leftovers = append(leftovers, m.Mountpoint)
		errs = append(errs, mountutil.Unmount(m.Mountpoint))
	}
	return leftovers, errors.Join(errs...)
}

// LayerStats returns the daemon's per-layer accounting from /stats; it
// needs Options.Metrics.
func (e *Env) LayerStats(ctx context.Context) ([]usage.LayerStats, error) {
	if e.MetricsAddr == "" {
		return nil, fmt.Errorf("the environment was started without Options.Metrics")
	}
	c, err := adminapi.NewClient(e.MetricsAddr)
	if err != nil {
		return nil, err
	}
	return c.Stats(ctx)
}

// FUSEServerSocket is where the separate FUSE server listens (the daemon's
// default, under its root).
func (e *Env) FUSEServerSocket() string {
	return filepath.Join(e.Dir, "snapshotter", "fuse-server.sock")
}

// stopFUSEServer asks the separate FUSE server to unmount everything and
// exit, and waits (bounded) for its mounts to go.
func (e *Env) stopFUSEServer(ctx context.Context) error {
	c := fuseremote.NewClient(e.FUSEServerSocket())
	if err := c.Ping(ctx); err != nil {
		return nil // not running
	}
	if err := c.Shutdown(ctx); err != nil {
		return err
	}
	root := filepath.Join(e.Dir, "snapshotter")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if ms, err := mountutil.Under(root); err == nil && len(ms) == 0 && c.Ping(ctx) != nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the FUSE server did not stop within 30s")
}

// SnapshotterPID returns the process id of the running daemon, or 0 if it
// is not running (stopped, or exited).
func (e *Env) SnapshotterPID() int {
	e.mu.Lock()
	p := e.snap
	e.mu.Unlock()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// PublishProfiles writes, next to every layer in the repository, the
// access profile a repository maintainer would publish
// (.metadata/access-profile.json) naming every regular file of the layer,
// then publishes the repository (see Publish).
func (e *Env) PublishProfiles() error {
	layers, err := filepath.Glob(filepath.Join(e.StoreDir, ".layers", "*", "*"))
	if err != nil {
		return err
	}
	for _, dir := range layers {
		layer := digest.NewDigestFromEncoded(digest.SHA256, filepath.Base(dir))
		if layer.Validate() != nil {
			continue
		}
		root := filepath.Join(dir, "layerfs")
		p := usage.PublishedProfile{Version: usage.PublishedProfileVersion, Layer: layer}
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(root, path)
			if err == nil {
				p.Files = append(p.Files, rel)
			}
			return err
		})
		if err != nil {
			return err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, ".metadata", usage.PublishedProfileName), b, 0o644); err != nil {
			return err
		}
	}
	e.Publish()
	return nil
}
