package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/custody"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// custodyName is the subcommand that runs the custody of FUSE connections.
const custodyName = "custody"

// custodySocket and custodyLog are the custody's socket and log in root.
func custodySocket(root string) string { return filepath.Join(absRoot(root), "custody.sock") }
func custodyLog(root string) string    { return filepath.Join(absRoot(root), "custody.log") }

func absRoot(root string) string {
	if abs, err := filepath.Abs(root); err == nil {
		return abs
	}
	return root
}

// custodyCommand is the command line that starts the custody of root: this
// executable's custody subcommand.
func custodyCommand(f flags) []string {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return []string{self, custodyName, "--socket", custodySocket(f.root), "--exit-when-idle", "--log-level", f.logLevel}
}

// runCustody is "cvmfs-snapshotter custody": it holds the FUSE connections
// the daemon hands it (custody.Serve) until ctx ends (SIGTERM/SIGINT).
func runCustody(ctx context.Context, args []string, out io.Writer) error {
	var sock, level string
	var exitWhenIdle bool
	fs := flag.NewFlagSet("cvmfs-snapshotter "+custodyName, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&sock, "socket", "", "unix socket to serve on (in a directory private to this user)")
	fs.StringVar(&level, "log-level", "info", "log level")
	fs.BoolVar(&exitWhenIdle, "exit-when-idle", false, "exit once no mount is kept and no daemon is connected (set by the daemon that starts it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sock == "" {
		return errors.New("custody: --socket is required")
	}
	if err := log.SetLevel(level); err != nil {
		return err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("snapshotter", "cvmfs-custody"))
	var opts []custody.Opt
	if exitWhenIdle {
		opts = append(opts, custody.ExitWhenIdle())
	}
	return custody.Serve(ctx, sock, opts...)
}

// adoptAll serves again (m.Adopt) every mount the custody holds: the
// mounts of running containers, left by a previous daemon. A connection
// that cannot be served again is released and its mount detached, so that
// its users get errors rather than wait forever.
func adoptAll(ctx context.Context, cl *custody.Client, m *fusefs.Manager) {
	conns, err := cl.List(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Error("cannot list the mounts the custody keeps")
		return
	}
	for _, c := range conns {
		id, mp, layer := c.ID, c.Mountpoint, c.Layer
		if err := m.Adopt(ctx, c); err != nil {
			log.G(ctx).WithError(err).WithFields(log.Fields{"layer": layer, "mountpoint": mp}).
				Error("cannot serve a mount of the previous daemon again: detaching it (its users get errors)")
			if err := cl.Release(ctx, id); err != nil {
				log.G(ctx).WithError(err).Warn("custody did not release a connection")
			}
			if err := mountutil.Unmount(mp); err != nil {
				log.G(ctx).WithError(err).WithField("mountpoint", mp).Warn("cannot unmount")
			}
		}
	}
}

// releaseCustody is for a daemon that serves no FUSE mounts in process
// (bind mode, a separate FUSE server): if a previous daemon's custody runs
// at root, every mount it keeps is detached and released, since nothing
// would serve them (running containers on them then get errors; the
// layers are mounted the new way for new containers).
func releaseCustody(ctx context.Context, root string) {
	cl := custody.NewClient(custodySocket(root))
	defer cl.Close()
	if cl.Ping(ctx) != nil {
		return
	}
	conns, err := cl.List(ctx)
	if err != nil {
		log.G(ctx).WithError(err).Warn("cannot list the mounts the custody keeps")
		return
	}
	for _, c := range conns {
		log.G(ctx).WithFields(log.Fields{"layer": c.Layer, "mountpoint": c.Mountpoint}).
			Warn("detaching a FUSE layer mount of a previous daemon: this daemon does not serve FUSE mounts in process")
		if err := mountutil.Unmount(c.Mountpoint); err != nil {
			log.G(ctx).WithError(err).WithField("mountpoint", c.Mountpoint).Warn("cannot unmount")
		}
		if err := cl.Release(ctx, c.ID); err != nil {
			log.G(ctx).WithError(err).Warn("custody did not release a connection")
		}
		c.Close()
	}
}
