package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/pkg/snapshotters"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
)

// Unique returns prefix followed by a random suffix: namespaces and
// container ids must not collide with other containerds on the machine
// (/run/containerd/{runc,s,fifo} is shared).
func Unique(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Namespace returns ctx in a fresh, unique containerd namespace that Close
// will clean up.
func (e *Env) Namespace(ctx context.Context, prefix string) context.Context {
	return e.UseNamespace(ctx, Unique(prefix))
}

// UseNamespace returns ctx in namespace ns (k8s.io, say), which Close will
// clean up.
func (e *Env) UseNamespace(ctx context.Context, ns string) context.Context {
	e.mu.Lock()
	e.namespaces[ns] = true
	e.mu.Unlock()
	return namespaces.WithNamespace(ctx, ns)
}

// PullOptions tune Pull.
type PullOptions struct {
	// Snapshotter defaults to SnapshotterName.
	Snapshotter string
	// NoLabels leaves out the layer-digest labels (a plain client pull).
	NoLabels bool
}

// Pull pulls and unpacks ref with containerd's Go client, adding the
// layer-digest labels a remote snapshotter needs (as CRI and cvmfsctl do).
func (e *Env) Pull(ctx context.Context, ref string, o PullOptions) (containerd.Image, error) {
	sn := o.Snapshotter
	if sn == "" {
		sn = SnapshotterName
	}
	opts := []containerd.RemoteOpt{
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(sn),
		containerd.WithResolver(docker.NewResolver(docker.ResolverOptions{
			Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(docker.MatchLocalhost)),
		})),
	}
	if !o.NoLabels {
		opts = append(opts, containerd.WithImageHandlerWrapper(snapshotters.AppendInfoHandlerWrapper(ref)))
	}
	img, err := e.Client.Pull(ctx, ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("pull %s into %s: %w", ref, sn, err)
	}
	return img, nil
}

// LayerState is what became of one layer of a pulled image.
type LayerState struct {
	Digest  digest.Digest // compressed, from the manifest
	Size    int64         // compressed
	ChainID digest.Digest
	// Remote: the snapshot carries snapshot.LabelRemote.
	Remote bool
	// HasBlob: the layer blob is in containerd's content store.
	HasBlob bool
}

// Layers reports, for each layer of img, whether its committed snapshot in
// snapshotter sn is remote and whether containerd holds its blob.
func (e *Env) Layers(ctx context.Context, img containerd.Image, sn string) ([]LayerState, error) {
	manifest, err := images.Manifest(ctx, e.Client.ContentStore(), img.Target(), img.Platform())
	if err != nil {
		return nil, err
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return nil, err
	}
	if len(diffIDs) != len(manifest.Layers) {
		return nil, fmt.Errorf("%d diff ids for %d layers", len(diffIDs), len(manifest.Layers))
	}
	// ChainIDs rewrites its argument, and the image caches diffIDs.
	chain := identity.ChainIDs(slices.Clone(diffIDs))
	out := make([]LayerState, len(chain))
	for i, l := range manifest.Layers {
		st := LayerState{Digest: l.Digest, Size: l.Size, ChainID: chain[i]}
		info, err := e.Client.SnapshotService(sn).Stat(ctx, chain[i].String())
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
		_, st.Remote = info.Labels[snapshot.LabelRemote]
		_, err = e.Client.ContentStore().Info(ctx, l.Digest)
		st.HasBlob = err == nil
		out[i] = st
	}
	return out, nil
}

// RunOptions tune Run.
type RunOptions struct {
	// Snapshotter defaults to SnapshotterName.
	Snapshotter string
	// Keep leaves the container (and its snapshot) in place; Close
	// removes it.
	Keep bool
	// Stdout, if set, receives the container's standard output as it
	// comes, besides Result.Stdout.
	Stdout io.Writer
}

// Result is the outcome of one container run.
type Result struct {
	ID             string
	Stdout, Stderr string
	ExitCode       uint32
}

// Run runs args in a new container from img and waits for it to exit.
func (e *Env) Run(ctx context.Context, img containerd.Image, o RunOptions, args ...string) (res Result, err error) {
	c, err := e.newContainer(ctx, img, o, args)
	if err != nil {
		return res, err
	}
	res.ID = c.ID()
	if !o.Keep {
		defer func() {
			if derr := c.Delete(context.WithoutCancel(ctx), containerd.WithSnapshotCleanup); derr != nil && err == nil {
				err = fmt.Errorf("delete container: %w", derr)
			}
		}()
	}
	fifos := filepath.Join(e.Dir, "fifo")
	if err := os.MkdirAll(fifos, 0o700); err != nil {
		return res, err
	}
	var stdout, stderr bytes.Buffer
	var out io.Writer = &stdout
	if o.Stdout != nil {
		out = io.MultiWriter(&stdout, o.Stdout)
	}
	task, err := c.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, out, &stderr), cio.WithFIFODir(fifos)))
	if err != nil {
		return res, fmt.Errorf("create task: %w", err)
	}
	exit, err := task.Wait(ctx)
	if err != nil {
		task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return res, err
	}
	if err := task.Start(ctx); err != nil {
		task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return res, fmt.Errorf("start task: %w", err)
	}
	var status containerd.ExitStatus
	select {
	case status = <-exit:
	case <-ctx.Done():
		task.Kill(context.WithoutCancel(ctx), syscall.SIGKILL)
		status = <-exit
	}
	drainErr := drainOutput(context.WithoutCancel(ctx), task.IO(), outputDrainTimeout)
	if _, err := task.Delete(context.WithoutCancel(ctx)); err != nil {
		return res, fmt.Errorf("delete task: %w", err)
	}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	if drainErr != nil {
		return res, drainErr
	}
	code, _, err := status.Result()
	res.ExitCode = code
	if err != nil {
		return res, err
	}
	if code != 0 {
		return res, fmt.Errorf("container %v exited with %d: %s", args, code, res.Stderr)
	}
	return res, ctx.Err()
}

// outputDrainTimeout bounds the wait for a container's output after its
// process has exited: only a process that leaves a child holding its
// stdout open makes the wait that long.
const outputDrainTimeout = 2 * time.Minute

// drainOutput waits until the client has copied all of a task's output:
// the copy ends when the shim closes its end of the FIFOs, once the
// process and everything it started have closed stdout and stderr. It
// must come before Task.Delete, which closes the client's end of the FIFOs
// at once (containerd 1.7 and later): whatever a slow reader has not yet
// taken from them is lost, and output is cut at a pipe buffer's size.
func drainOutput(ctx context.Context, io cio.IO, timeout time.Duration) error {
	if io == nil {
		return nil
	}
	done := make(chan struct{})
	go func() {
		// Returns when the copy ends, or when Delete closes the FIFOs
		// after a timeout below.
		io.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("container output still open %s after its process exited", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start starts args in a new container from img and returns its id
// without waiting: the container keeps running until Close (or the caller)
// removes it.
func (e *Env) Start(ctx context.Context, img containerd.Image, o RunOptions, args ...string) (string, error) {
	c, err := e.newContainer(ctx, img, o, args)
	if err != nil {
		return "", err
	}
	task, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		return c.ID(), fmt.Errorf("create task: %w", err)
	}
	if err := task.Start(ctx); err != nil {
		return c.ID(), fmt.Errorf("start task: %w", err)
	}
	return c.ID(), nil
}

// newContainer creates a container with a unique id running args from img,
// its rootfs a new snapshot in o.Snapshotter.
func (e *Env) newContainer(ctx context.Context, img containerd.Image, o RunOptions, args []string) (containerd.Container, error) {
	sn := o.Snapshotter
	if sn == "" {
		sn = SnapshotterName
	}
	id := Unique("e2e")
	c, err := e.Client.NewContainer(ctx, id,
		// runc's state goes under Dir, not /run/containerd/runc.
		containerd.WithRuntime(plugins.RuntimeRuncV2, &options.Options{Root: filepath.Join(e.Dir, "runc")}),
		containerd.WithImage(img),
		containerd.WithSnapshotter(sn),
		containerd.WithNewSnapshot(id, img),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)),
	)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	return c, nil
}

// removeContainers kills and deletes every task and container in ns,
// with their snapshots.
func (e *Env) removeContainers(ctx context.Context, ns string) error {
	ctx = namespaces.WithNamespace(ctx, ns)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cs, err := e.Client.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range cs {
		if task, err := c.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
