package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/core/snapshots/proxy"
	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
)

// Labels containerd passes to a remote snapshotter's Prepare.
const (
	labelTarget      = "containerd.io/snapshot.ref"
	labelLayerDigest = "containerd.io/snapshot/cri.layer-digest"
)

// prepPoint is the state of the daemon once Layers layers are mounted,
// with the latencies of the Prepare calls of the last step.
type prepPoint struct {
	Layers      int
	VmRSSKiB    int64
	VmHWMKiB    int64
	Median, P90 time.Duration
	Min, Max    time.Duration
	StepLatency []time.Duration `json:",omitempty"`
}

// prepResult is one variant's Prepare run.
type prepResult struct {
	Variant  string
	Baseline prepPoint // before any Prepare
	Points   []prepPoint
	// RemoveAll is how long removing every snapshot (unmounting each
	// layer), topmost first, took.
	RemoveAll time.Duration
}

// imageLayers is how many layers each image of the Prepare run has: the
// layers stack as images do, 20 to a chain, so that the run measures the
// number of layers mounted, not the depth of one chain (containerd's own
// metadata store walks a snapshot's whole parent chain on every Prepare,
// for its overlayfs snapshotter as for ours; overlayfs mounts at most a
// few hundred lower layers anyway).
const imageLayers = 20

// tinyLayers writes n one-file layers into repo and returns their
// digests and the chain ids of the images of imageLayers layers they
// make, bottom first.
func tinyLayers(ctx context.Context, repo *ducc.Repo, n int) (layers, chain []digest.Digest, err error) {
	layers = make([]digest.Digest, n)
	diffIDs := make([]digest.Digest, n)
	for i := range layers {
		blob := tinyLayer(i)
		layers[i] = digest.FromBytes(blob)
		res, err := repo.WriteLayer(ctx, ducc.LayerBlob{
			Digest:    layers[i],
			MediaType: string(types.DockerLayer),
			Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(blob)), nil
			},
		})
		if err != nil {
			return nil, nil, err
		}
		diffIDs[i] = res.DiffID
	}
	for i := 0; i < n; i += imageLayers {
		chain = append(chain, identity.ChainIDs(slices.Clone(diffIDs[i:min(i+imageLayers, n)]))...)
	}
	return layers, chain, nil
}

// runPrepare restarts env's daemon configured as v, then calls Prepare on
// its socket for each of layers, as containerd does when it unpacks images
// of imageLayers layers (each layer's parent is the chain below it),
// timing each call and reading the daemon's memory every cfg.prepStep
// layers. It removes every snapshot it made at the end.
func runPrepare(ctx context.Context, cfg config, env *harness.Env, v variant, layers, chain []digest.Digest) (prepResult, error) {
	pr := prepResult{Variant: v.Name}
	// Always a fresh process: its memory is what is measured.
	progress("%s: Prepare: restarting the daemon", v.Name)
	if err := env.Reconfigure(ctx, v.Opts); err != nil {
		return pr, err
	}
	conn, err := grpc.NewClient("unix://"+env.SnapshotterSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return pr, err
	}
	defer conn.Close()
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), harness.SnapshotterName)
	pid := env.SnapshotterPID()
	if pr.Baseline, err = memory(pid); err != nil {
		return pr, err
	}
	progress("%s: Prepare: daemon pid %d, VmRSS %s before any layer", v.Name, pid, mib(pr.Baseline.VmRSSKiB))

	var step []time.Duration
	for i := range layers {
		parent := ""
		if i%imageLayers != 0 {
			parent = chain[i-1].String()
		}
		key := fmt.Sprintf("extract-%d-bench %s", time.Now().UnixNano(), chain[i])
		labels := map[string]string{labelTarget: chain[i].String(), labelLayerDigest: layers[i].String()}
		t0 := time.Now()
		_, err := sn.Prepare(ctx, key, parent, snapshots.WithLabels(labels))
		d := time.Since(t0)
		if !errdefs.IsAlreadyExists(err) {
			return pr, fmt.Errorf("Prepare of layer %d (%s) was not served remotely: %v", i, layers[i], err)
		}
		step = append(step, d)
		if (i+1)%cfg.prepStep == 0 || i+1 == len(layers) {
			pt, err := memory(pid)
			if err != nil {
				return pr, err
			}
			pt.Layers = i + 1
			s := slices.Clone(step)
			slices.Sort(s)
			pt.Median, pt.P90, pt.Min, pt.Max = quantile(s, 0.5), quantile(s, 0.9), s[0], s[len(s)-1]
			pr.Points = append(pr.Points, pt)
			progress("%s: Prepare: %4d layers mounted: VmRSS %s, VmHWM %s; Prepare of the last %d: median %s, p90 %s",
				v.Name, pt.Layers, mib(pt.VmRSSKiB), mib(pt.VmHWMKiB), len(step), ms(pt.Median), ms(pt.P90))
			step = step[:0]
		}
	}

	t0 := time.Now()
	for i := len(chain) - 1; i >= 0; i-- {
		if err := sn.Remove(ctx, chain[i].String()); err != nil {
			return pr, fmt.Errorf("remove layer %d: %w", i, err)
		}
	}
	pr.RemoveAll = time.Since(t0)
	progress("%s: Prepare: removed the %d snapshots (unmounting each layer) in %s", v.Name, len(chain), pr.RemoveAll.Round(time.Millisecond))
	return pr, nil
}

// memory reads VmRSS and VmHWM of pid.
func memory(pid int) (prepPoint, error) {
	var pt prepPoint
	if pid == 0 {
		return pt, fmt.Errorf("the daemon is not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return pt, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			pt.VmRSSKiB = n
		case "VmHWM":
			pt.VmHWMKiB = n
		}
	}
	if pt.VmRSSKiB == 0 {
		return pt, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return pt, nil
}

// quantile returns the q-quantile of sorted s (nearest rank).
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
