//go:build linux

package main

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
)

// listen creates the unix socket at path for the daemon's gRPC API, its
// admin endpoints or the separate FUSE server, with unixsock.Listen: 0600
// from its creation, and only a stale socket is ever replaced (the path
// may be a typo pointing at someone's file).
func listen(path string) (net.Listener, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("socket %q: %w", path, err)
	}
	return unixsock.Listen(abs)
}
