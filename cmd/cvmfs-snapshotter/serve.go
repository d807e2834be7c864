package main

import (
	"context"
	"fmt"
	"os"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/v2/contrib/snapshotservice"
	"github.com/containerd/log"
	"google.golang.org/grpc"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
)

// gracePeriod bounds how long in-flight RPCs may run after a stop signal.
const gracePeriod = 10 * time.Second

// run wires the configuration into a snapshotter, serves it on the socket
// until ctx ends, then shuts down: stop serving, unmount every remote layer,
// keep every snapshot on disk.
func run(ctx context.Context, f flags) error {
	if err := log.SetLevel(f.logLevel); err != nil {
		return fmt.Errorf("log level %q: %w", f.logLevel, err)
	}
	cfg, err := config.Load(f.config)
	if err != nil {
		return err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("snapshotter", "cvmfs"))

	if err := os.MkdirAll(f.root, 0o700); err != nil {
		return fmt.Errorf("create root: %w", err)
	}
	// First: before anything opens the database or starts a FUSE server.
	lock, err := lockRoot(f.root)
	if err != nil {
		return err
	}
	defer lock.Close()
	be, err := newBackend(ctx, cfg, f)
	if err != nil {
		return err
	}
	defer func() {
		if err := be.close(context.WithoutCancel(ctx)); err != nil {
			log.G(ctx).WithError(err).Error("failed to stop the layer filesystem")
		}
	}()

	records, err := openUsage(ctx, cfg, f, &be)
	if err != nil {
		return err
	}
	defer func() {
		if err := records.Close(context.WithoutCancel(ctx)); err != nil {
			log.G(ctx).WithError(err).Error("failed to write the usage records")
		}
	}()

	sopts, err := cfg.SnapshotOpts()
	if err != nil {
		return err
	}
	opts := append([]snapshot.Opt{snapshot.WithLayerFS(be.layers), recordLayers(records)}, sopts...)
	if be.keepMounts {
		opts = append(opts, snapshot.WithKeepMountsOnClose())
	}
	sn, err := snapshot.New(ctx, f.root, opts...)
	if err != nil {
		return fmt.Errorf("open snapshotter: %w", err)
	}
	defer func() {
		if err := sn.Close(); err != nil {
			log.G(ctx).WithError(err).Error("failed to close the snapshotter")
		}
	}()

	l, err := unixsock.Listen(f.address)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))

	endpoints, err := serveHTTP(ctx, cfg, cfg.AdminSocketPath(f.root), be.stats, records)
	if err != nil {
		l.Close()
		return err
	}
	defer endpoints.stop(ctx)

	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(l) }()
	log.G(ctx).WithField("address", f.address).WithField("root", f.root).
		WithField("repository", cfg.AbsoluteMountpoint).WithField("mode", cfg.MountMode).
		Info("cvmfs-snapshotter serving")

	select {
	case err := <-errCh:
		return fmt.Errorf("grpc server: %w", err)
	case <-ctx.Done():
	}
	log.G(ctx).Info("stopping: finishing in-flight requests, then unmounting remote layers")
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(gracePeriod):
		srv.Stop()
	}
	return nil
}
