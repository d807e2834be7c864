//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/log"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/atomicfile"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/smallfile"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/unixsock"
)

// stopTimeout bounds how long a stopping server waits for the calls in
// flight and for its Manager to unmount everything.
const stopTimeout = 30 * time.Second

// PIDFile is where the FUSE server of the daemon whose root is root records
// its pid while it serves (and until every mount is gone).
func PIDFile(root string) string { return filepath.Join(root, "fuse-server.pid") }

// Serve is the separate FUSE server's run: it serves m, through a Server
// for the daemon whose root is root, on a unix socket it creates at
// socket (unixsock.Listen: 0600 from its creation, only a stale socket is
// replaced), until ctx ends or a daemon calls Shutdown. Then it stops
// answering and closes m, which unmounts every layer. Its pid is in
// PIDFile(root) from before the first call is answered until every mount
// is gone, so that a daemon that cannot reach the socket in between knows
// not to start another server. opts are those of NewServer.
func Serve(ctx context.Context, m Manager, root, socket string, opts ...ServerOpt) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	srv, err := NewServer(m, root, append(opts, WithStop(stop))...)
	if err != nil {
		return err
	}
	l, err := unixsock.Listen(socket)
	if err != nil {
		return err
	}
	pidFile := PIDFile(srv.root)
	if err := writePIDFile(pidFile); err != nil {
		l.Close()
		return err
	}
	defer removePIDFile(pidFile)
	go func() {
		if err := srv.Serve(ctx, l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.G(ctx).WithError(err).Error("fuse server stopped serving")
			stop()
		}
	}()
	log.G(ctx).WithField("socket", socket).Info("FUSE server serving")
	<-ctx.Done()
	log.G(ctx).Info("FUSE server stopping: unmounting every layer")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	_ = srv.Shutdown(sctx) // closes l; what is still in flight is cut short
	return m.Close(sctx)
}

// writePIDFile records this process's pid at path, atomically.
func writePIDFile(path string) error {
	if err := atomicfile.Write(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	return nil
}

// removePIDFile removes path if it still holds this process's pid.
func removePIDFile(path string) {
	if pid, err := readPIDFile(path); err == nil && pid == os.Getpid() {
		os.Remove(path)
	}
}

// maxPIDFile bounds what readPIDFile reads.
const maxPIDFile = 64

// readPIDFile reads the pid in the regular file path: never through a
// symlink, never waiting on a FIFO, at most maxPIDFile bytes.
func readPIDFile(path string) (int, error) {
	b, err := smallfile.Read(path, maxPIDFile)
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
