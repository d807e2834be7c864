package ducc

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/bounded"
)

// Contents counts the regular files of layer's unpacked tree and the sum of
// their sizes, as a container sees them: OCI whiteouts (".wh.*") and
// .cvmfscatalog markers are not counted. It walks the tree once, beneath
// the directory OpenLayer checked, following no symlink; the walk runs in
// its own goroutine and is abandoned when ctx ends (errdefs.ErrUnavailable),
// checking ctx between entries so that it stops soon after. Errors are
// classified as OpenLayer's.
func (r *Repo) Contents(ctx context.Context, layer digest.Digest) (files, bytes int64, err error) {
	dir, err := r.OpenLayer(ctx, layer)
	if err != nil {
		return 0, 0, err
	}
	defer dir.Close()
	// The walk may outlive this call (a stuck CVMFS): it gets a descriptor
	// of its own, closed when it ends, never dir's, which closes on return.
	fd, err := unix.FcntlInt(dir.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return 0, 0, fmt.Errorf("walk %s: %w", dir.Name(), err)
	}
	name := dir.Name()
	type counts struct{ files, bytes int64 }
	c, err := bounded.Call(ctx, name, func() (*counts, error) {
		defer unix.Close(fd)
		// The open directory itself, not its path again: /proc/self/fd
		// names exactly what OpenLayer checked.
		root, err := os.OpenRoot(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			return nil, err
		}
		defer root.Close()
		var c counts
		err = fs.WalkDir(root.FS(), ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			name := d.Name()
			if !d.Type().IsRegular() || strings.HasPrefix(name, ".wh.") || name == CatalogMarker {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			c.files++
			c.bytes += info.Size()
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("walk %s: %w", name, err)
		}
		return &c, nil
	})
	if err != nil {
		return 0, 0, err
	}
	return c.files, c.bytes, nil
}
