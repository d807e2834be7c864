//go:build linux

package ducc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

const (
	// tmpPrefix starts the names of the trees WriteLayer builds, beside
	// their final place in .layers/<xx>.
	tmpPrefix = ".tmp-"
	// partialMinAge spares a tree made so recently that its writer may not
	// hold its lock yet (it takes it right after the mkdir).
	partialMinAge = time.Minute
)

// lockTree takes a shared lock on the tree dir being written, held until
// the returned function runs: RemovePartial leaves a locked tree alone. The
// lock goes with the process, so a killed writer's tree is free.
func lockTree(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "flock", Path: dir, Err: err}
	}
	return func() { unix.Close(fd) }, nil
}

// RemovePartial removes the partial layer trees that writes which never
// finished (the ingest killed, the machine down) left under .layers, and
// returns how many it removed. A tree still being written (its writer
// holds its lock) or made in the last minute is kept. A repository without
// .layers has none.
func (r *Repo) RemovePartial(ctx context.Context) (int, error) {
	layers := filepath.Join(r.root, layersDir)
	prefixes, err := os.ReadDir(layers)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	removed := 0
	var errs []error
	for _, p := range prefixes {
		if !p.IsDir() || len(p.Name()) != 2 {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(layers, p.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), tmpPrefix) {
				continue
			}
			tree := filepath.Join(layers, p.Name(), e.Name())
			ok, err := removeUnlocked(tree)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if ok {
				removed++
				log.G(ctx).WithField("path", tree).Info("removed the partial tree of an interrupted layer write")
			}
		}
	}
	return removed, errors.Join(errs...)
}

// removeUnlocked removes tree unless its writer still holds its lock or it
// is younger than partialMinAge; it reports whether it did.
func removeUnlocked(tree string) (bool, error) {
	fd, err := unix.Open(tree, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, nil // gone, or not a directory: not ours to judge
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	if time.Since(time.Unix(st.Mtim.Unix())) < partialMinAge {
		return false, nil
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil
		}
		return false, &os.PathError{Op: "flock", Path: tree, Err: err}
	}
	if err := os.RemoveAll(tree); err != nil {
		return false, fmt.Errorf("remove partial layer tree: %w", err)
	}
	return true, nil
}
