package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// Workload ids, in report order.
const (
	wFirstRead = "small-first"
	wColdRead  = "small-cold"
	wWarmRead  = "small-warm"
	wWalk      = "walk-warm"
	wStart     = "start"
	wSeqFirst  = "seq-first"
	wSeqCold   = "seq-cold"
	wSeqWarm   = "seq-warm"
	wPull      = "pull"
)

// result holds the samples of one workload for one variant: each index i
// of Overlay and Ours comes from the same repetition.
type result struct {
	Workload string
	Variant  string
	Overlay  []time.Duration
	Ours     []time.Duration
}

// bench runs containers in one environment.
type bench struct {
	cfg variant
	env *harness.Env
	res map[string]*result
}

// add records one pair of samples.
func (b *bench) add(workload string, ov, ours time.Duration) {
	r := b.res[workload]
	if r == nil {
		r = &result{Workload: workload, Variant: b.cfg.Name}
		b.res[workload] = r
	}
	r.Overlay = append(r.Overlay, ov)
	r.Ours = append(r.Ours, ours)
}

// side is one of the two snapshotters a workload runs on.
type side struct {
	name string // "overlayfs" or the variant
	sn   string // containerd snapshotter name
	img  containerd.Image
}

// elapsedRe finds the time a timed probe subcommand reports.
var elapsedRe = regexp.MustCompile(`elapsed_ns=(\d+)`)

// probe runs the probe in a container on s and returns the time it
// reported (0 if it reports none), the wall time of the whole run and its
// output.
func (b *bench) probe(ctx context.Context, s side, args ...string) (inside, wall time.Duration, out string, err error) {
	t0 := time.Now()
	res, err := b.env.Run(ctx, s.img, harness.RunOptions{Snapshotter: s.sn}, append([]string{harness.ProbePath}, args...)...)
	wall = time.Since(t0)
	if err != nil {
		return 0, wall, "", fmt.Errorf("%s: probe %s: %w\n%s", s.name, strings.Join(args, " "), err, res.Stderr)
	}
	if m := elapsedRe.FindStringSubmatch(res.Stdout); m != nil {
		ns, _ := strconv.ParseInt(m[1], 10, 64)
		inside = time.Duration(ns)
	}
	return inside, wall, res.Stdout, nil
}

// timed runs a timed probe subcommand on s, dropping the caches first if
// cold, and checks that its output contains want.
func (b *bench) timed(ctx context.Context, s side, cold bool, want string, args ...string) (time.Duration, error) {
	if cold {
		if err := dropCaches(); err != nil {
			return 0, err
		}
	}
	inside, _, out, err := b.probe(ctx, s, args...)
	if err != nil {
		return 0, err
	}
	if !strings.Contains(out, want) || inside == 0 {
		return 0, fmt.Errorf("%s: probe %s said %q, want %q and a time", s.name, strings.Join(args, " "), strings.TrimSpace(out), want)
	}
	return inside, nil
}

// pair runs f on overlayfs and on ours, in that order on even repetitions
// and the other way round on odd ones, and returns both times.
func pair(rep int, ov, ours side, f func(side) (time.Duration, error)) (tov, tours time.Duration, err error) {
	first, second := &tov, &tours
	if rep%2 == 1 {
		ov, ours = ours, ov
		first, second = second, first
	}
	if *first, err = f(ov); err != nil {
		return 0, 0, err
	}
	*second, err = f(ours)
	return tov, tours, err
}

// record runs pair and records both times under workload.
func (b *bench) record(rep int, workload string, ov, ours side, f func(side) (time.Duration, error)) error {
	tov, tours, err := pair(rep, ov, ours, f)
	if err == nil {
		b.add(workload, tov, tours)
	}
	return err
}

// pullBoth pulls ref in the namespace of ctx into overlayfs (a plain pull)
// and into our snapshotter (with the layer labels), and checks that every
// layer of ours is remote. A CVMFS-like store starts each pull with an
// empty cache (every file's first open is a miss), as a node that has not
// run the image yet.
func (b *bench) pullBoth(ctx context.Context, ref string) (ov, ours side, err error) {
	if b.env.Store != nil {
		b.env.Store.WipeCache()
	}
	ovImg, err := b.env.Pull(ctx, ref, harness.PullOptions{Snapshotter: "overlayfs", NoLabels: true})
	if err != nil {
		return ov, ours, err
	}
	ourImg, err := b.env.Pull(ctx, ref, harness.PullOptions{})
	if err != nil {
		return ov, ours, err
	}
	if err := b.allRemote(ctx, ourImg); err != nil {
		return ov, ours, err
	}
	return side{"overlayfs", "overlayfs", ovImg}, side{b.cfg.Name, harness.SnapshotterName, ourImg}, nil
}

// allRemote returns an error unless every layer of img is remote in our
// snapshotter: a benchmark of pulled layers would measure overlayfs twice.
func (b *bench) allRemote(ctx context.Context, img containerd.Image) error {
	ls, err := b.env.Layers(ctx, img, harness.SnapshotterName)
	if err != nil {
		return err
	}
	for i, l := range ls {
		if !l.Remote {
			return fmt.Errorf("layer %d (%s) of %s was pulled, not served from the repository", i, l.Digest, img.Name())
		}
	}
	return nil
}

// dropNamespace deletes every image of the namespace of ctx with a
// synchronous garbage collection: the snapshots (and our mounts) and the
// blobs go with them.
func (b *bench) dropNamespace(ctx context.Context) error {
	is := b.env.Client.ImageService()
	list, err := is.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, img := range list {
		errs = append(errs, is.Delete(ctx, img.Name, images.SynchronousDelete()))
	}
	return errors.Join(errs...)
}

// dropCaches writes back dirty pages and drops the page, dentry and inode
// caches of every filesystem.
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("drop caches: %w", err)
	}
	return nil
}

// loadImages pushes the images the run needs into env's registry and ingests them
// into its repository, and returns their references.
func loadImages(ctx context.Context, cfg config, env *harness.Env, im fixtures) (map[string]string, error) {
	refs := map[string]string{}
	for name, img := range map[string]v1.Image{"small": im.small, "big": im.big, "pull": im.pull} {
		if name == "pull" && !cfg.wants(wPull) {
			continue // a large image no workload of this run pulls
		}
		ref, err := env.Registry.Push("bench/"+name, "1", img)
		if err != nil {
			return nil, err
		}
		if _, err := env.Ingest(ctx, ref); err != nil {
			return nil, err
		}
		refs[name] = ref
	}
	return refs, nil
}

// useVariant (re)starts env's daemon configured as v, unless it already
// is, and returns the length of its log so far.
func useVariant(ctx context.Context, env *harness.Env, v variant) (int, error) {
	if env.Options != v.Opts {
		progress("%s: restarting the daemon", v.Name)
		if err := env.Reconfigure(ctx, v.Opts); err != nil {
			return 0, err
		}
	}
	return len(env.SnapshotterLog()), nil
}

// runVariant runs every container workload with env's daemon configured
// as v.
func runVariant(ctx context.Context, cfg config, env *harness.Env, refs map[string]string, v variant) ([]result, passthrough, error) {
	pt := passthrough{Variant: v.Name}
	logStart, err := useVariant(ctx, env, v)
	if err != nil {
		return nil, pt, err
	}
	b := &bench{cfg: v, env: env, res: map[string]*result{}}
	if cfg.wants(wFirstRead) || cfg.wants(wColdRead) || cfg.wants(wWarmRead) || cfg.wants(wWalk) || cfg.wants(wStart) {
		if err := b.smallFiles(ctx, cfg, refs["small"]); err != nil {
			return nil, pt, err
		}
	}
	if cfg.wants(wSeqFirst) || cfg.wants(wSeqCold) || cfg.wants(wSeqWarm) {
		if err := b.seqRead(ctx, cfg, refs["big"]); err != nil {
			return nil, pt, err
		}
	}
	if cfg.wants(wPull) {
		if err := b.pull(ctx, cfg, refs["pull"]); err != nil {
			return nil, pt, err
		}
	}
	pt.Mode = passthroughFromLog(env.SnapshotterLog()[logStart:], v)

	var out []result
	for _, w := range workloadOrder {
		if r := b.res[w]; r != nil {
			out = append(out, *r)
		}
	}
	return out, pt, nil
}

// smallFiles runs the small-file, walk and start workloads, each
// repetition on a fresh pull in a new namespace.
func (b *bench) smallFiles(ctx context.Context, cfg config, ref string) error {
	want := fmt.Sprintf("files=%d bytes=%d ", cfg.layers*cfg.files, int64(cfg.layers*cfg.files*cfg.fileSize))
	for rep := range cfg.reps {
		nctx := b.env.Namespace(ctx, "bench")
		ov, ours, err := b.pullBoth(nctx, ref)
		if err != nil {
			return err
		}
		if cfg.wants(wFirstRead) {
			if err := b.record(rep, wFirstRead, ov, ours, b.readall(nctx, false, want, smallRoot)); err != nil {
				return err
			}
		}
		if cfg.wants(wColdRead) || cfg.wants(wWarmRead) {
			if err := b.readColdWarm(nctx, rep, ov, ours, wColdRead, wWarmRead, want, smallRoot); err != nil {
				return err
			}
		}
		if cfg.wants(wWalk) {
			walk := func(s side) (time.Duration, error) { return b.timed(nctx, s, false, "entries=", "walksum", "/") }
			// One untimed walk each first: xattrs are in no cache yet.
			if _, _, err := pair(rep, ov, ours, walk); err != nil {
				return err
			}
			if err := b.record(rep, wWalk, ov, ours, walk); err != nil {
				return err
			}
		}
		if cfg.wants(wStart) {
			start := func(s side) (time.Duration, error) {
				_, wall, out, err := b.probe(nctx, s, "echo", "hi")
				if err == nil && strings.TrimSpace(out) != "hi" {
					err = fmt.Errorf("%s: probe echo hi said %q", s.name, out)
				}
				return wall, err
			}
			for range 3 {
				if err := b.record(rep, wStart, ov, ours, start); err != nil {
					return err
				}
			}
		}
		progress("%s: small files %d/%d: %s (overlayfs / ours)", b.cfg.Name, rep+1, cfg.reps,
			b.lastPairs(wFirstRead, wColdRead, wWarmRead, wWalk, wStart))
		if err := b.dropNamespace(nctx); err != nil {
			return err
		}
	}
	return nil
}

// readall returns a run of `probe readall path` on a side, dropping the
// caches first if cold.
func (b *bench) readall(ctx context.Context, cold bool, want, path string) func(side) (time.Duration, error) {
	return func(s side) (time.Duration, error) { return b.timed(ctx, s, cold, want, "readall", path) }
}

// lastPairs describes the last pair of samples of each workload recorded.
func (b *bench) lastPairs(ws ...string) string {
	var parts []string
	for _, w := range ws {
		if r := b.res[w]; r != nil {
			parts = append(parts, fmt.Sprintf("%s %s / %s", workloads[w].Short, r.last(0), r.last(1)))
		}
	}
	return strings.Join(parts, ", ")
}

// readColdWarm reads everything below path in a container on each side,
// expecting the probe to say want: cold (the first run after the pull,
// caches dropped before each side) recorded as workload cold, then an
// untimed run (the second cold drop emptied the first side's cache: it
// warms both), then the warm 3rd run recorded as workload warm.
func (b *bench) readColdWarm(ctx context.Context, rep int, ov, ours side, cold, warm, want, path string) error {
	if err := b.record(rep, cold, ov, ours, b.readall(ctx, true, want, path)); err != nil {
		return err
	}
	if _, _, err := pair(rep, ov, ours, b.readall(ctx, false, want, path)); err != nil {
		return err
	}
	return b.record(rep, warm, ov, ours, b.readall(ctx, false, want, path))
}

// seqRead reads the large file, cold and warm (2nd run), each repetition
// on a fresh pull.
func (b *bench) seqRead(ctx context.Context, cfg config, ref string) error {
	want := fmt.Sprintf("files=1 bytes=%d ", cfg.bigSize)
	for rep := range cfg.bigReps {
		nctx := b.env.Namespace(ctx, "bench")
		ov, ours, err := b.pullBoth(nctx, ref)
		if err != nil {
			return err
		}
		if cfg.wants(wSeqFirst) {
			if err := b.record(rep, wSeqFirst, ov, ours, b.readall(nctx, false, want, bigPath)); err != nil {
				return err
			}
		}
		if cfg.wants(wSeqCold) || cfg.wants(wSeqWarm) {
			if err := b.readColdWarm(nctx, rep, ov, ours, wSeqCold, wSeqWarm, want, bigPath); err != nil {
				return err
			}
		}
		progress("%s: sequential read %d/%d: %s (overlayfs / ours)", b.cfg.Name, rep+1, cfg.bigReps,
			b.lastPairs(wSeqFirst, wSeqCold, wSeqWarm))
		if err := b.dropNamespace(nctx); err != nil {
			return err
		}
	}
	return nil
}

// pull times the pull of ref into our snapshotter (every layer remote) and
// into overlayfs (every layer downloaded and unpacked), each in a new
// namespace after the caches are dropped, then deletes both.
func (b *bench) pull(ctx context.Context, cfg config, ref string) error {
	for rep := range cfg.pullReps {
		var nss []context.Context
		err := b.record(rep, wPull, side{name: "overlayfs", sn: "overlayfs"}, side{name: b.cfg.Name, sn: harness.SnapshotterName},
			func(s side) (time.Duration, error) {
				nctx := b.env.Namespace(ctx, "bench-pull")
				nss = append(nss, nctx)
				if err := dropCaches(); err != nil {
					return 0, err
				}
				t0 := time.Now()
				img, err := b.env.Pull(nctx, ref, harness.PullOptions{Snapshotter: s.sn, NoLabels: s.sn == "overlayfs"})
				d := time.Since(t0)
				if err == nil && s.sn != "overlayfs" {
					err = b.allRemote(nctx, img)
				}
				return d, err
			})
		if err != nil {
			return err
		}
		progress("%s: pull %d/%d: %s / %s", b.cfg.Name, rep+1, cfg.pullReps, b.res[wPull].last(0), b.res[wPull].last(1))
		for _, nctx := range nss {
			if err := b.dropNamespace(nctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// passthrough says whether the daemon's FUSE mounts got kernel
// passthrough reads, from its log.
type passthrough struct {
	Variant string
	Mode    string
}

// passthroughFromLog reads the "layer mounted" lines of the daemon's log.
func passthroughFromLog(log string, v variant) string {
	if v.Opts.MountMode == "bind" {
		return "n/a (bind mounts)"
	}
	granted := strings.Count(log, "mode=passthrough")
	user := strings.Count(log, "mode=userspace")
	refused := strings.Count(log, "FUSE passthrough not granted")
	switch {
	case granted > 0 && user == 0:
		return fmt.Sprintf("granted (%d mounts with mode=passthrough)", granted)
	case v.Opts.Accounting != "open" && granted == 0:
		return fmt.Sprintf("off by configuration (%d mounts with mode=userspace)", user)
	default:
		return fmt.Sprintf("NOT granted on %d of %d mounts (%d refusals logged)", user, granted+user, refused)
	}
}
