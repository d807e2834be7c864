package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
)

// fuseServerName is the subcommand that runs the separate FUSE server.
const fuseServerName = "fuse-server"

// fuseServerCommand is the command line that starts the separate FUSE
// server for the daemon of f, on sock: this executable's fuse-server
// subcommand, with the daemon's root, configuration and log level.
func fuseServerCommand(f flags, sock string) []string {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	root, err := filepath.Abs(f.root)
	if err != nil {
		root = f.root
	}
	args := []string{self, fuseServerName, "--socket", sock, "--root", root, "--log-level", f.logLevel}
	if f.config != "" {
		args = append(args, "--config", f.config)
	}
	return args
}

// runFUSEServer is "cvmfs-snapshotter fuse-server": it serves FUSE layer
// mounts for daemons that connect on its socket (fuseremote.Serve), until
// ctx ends (SIGTERM/SIGINT) or a shutdown call, then unmounts them all.
func runFUSEServer(ctx context.Context, args []string, out io.Writer) error {
	var sock, root, cfgPath, level string
	fs := flag.NewFlagSet("cvmfs-snapshotter "+fuseServerName, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&sock, "socket", "", "unix socket to serve the FUSE API on (created 0600)")
	fs.StringVar(&root, "root", "", "the daemon's --root: only <root>/snapshots/<id>/fs may be mounted")
	fs.StringVar(&cfgPath, "config", "", "path to the daemon's TOML configuration file")
	fs.StringVar(&level, "log-level", "info", "log level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if sock == "" || root == "" {
		return errors.New("fuse-server: --socket and --root are required")
	}
	if err := log.SetLevel(level); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("snapshotter", "cvmfs-fuse-server"))
	m, err := newManager(cfg, ducc.New(cfg.AbsoluteMountpoint), nil, fusefs.WithStateDir(layerStateDir(root)))
	if err != nil {
		return err
	}
	return fuseremote.Serve(ctx, m, root, sock)
}
