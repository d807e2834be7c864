//go:build linux

package fusefs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/atomicfile"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/beneath"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/smallfile"
)

// A layer's shape is what one walk of its tree learns, once and for all
// (layers are immutable): whether any directory is opaque.
//
// Why it matters: overlayfs asks its lower layers for extended attributes
// on every lookup (trusted.overlay.metacopy of every regular file,
// trusted.overlay.opaque of every merged directory, security.capability at
// every exec), and FUSE caches no xattrs, so each is a synchronous round
// trip to the daemon, paid again by every new overlay mount, that is by
// every new container. A layer presents no attribute but the opaque marker
// of its opaque directories (DUCC stores none, and the backing tree's own
// attributes are the repository's, not the image's), so a layer with no
// opaque directory answers GETXATTR and LISTXATTR with ENOSYS: the kernel
// then stops sending them for that mount and answers EOPNOTSUPP itself,
// which overlayfs reads as "no such attribute".
//
// Until a layer's shape is known (the walk runs in the background after
// its first mount), its mounts answer xattr requests one by one.
type layerShape struct {
	Version int `json:"version"`
	// Opaque is set if some directory of the layer holds the opaque marker.
	Opaque bool `json:"opaque"`
	// Dirs and Entries count what the walk saw (up to the first opaque
	// directory): for people reading the file.
	Dirs    int64 `json:"dirs"`
	Entries int64 `json:"entries"`
}

const (
	shapeVersion = 1
	// maxShapeEntries bounds a walk; a layer with more entries keeps
	// answering xattr requests.
	maxShapeEntries = 20_000_000
	// maxShapeFile bounds what is read of a shape file.
	maxShapeFile = 4 << 10
)

// errTooLarge stops a walk past maxShapeEntries.
var errTooLarge = errors.New("layer has too many entries to walk")

// walkShape lists every directory beneath rootfd (never following a
// symlink), stopping at the first opaque one.
func walkShape(ctx context.Context, rootfd int) (layerShape, error) {
	s := layerShape{Version: shapeVersion}
	stack := []string{""}
	for len(stack) > 0 {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		rel := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		fd, err := beneath.Open(rootfd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
		if err != nil {
			return s, fmt.Errorf("open %q: %w", rel, err)
		}
		ents, err := readDirents(fd)
		if err != nil {
			unix.Close(fd)
			return s, fmt.Errorf("list %q: %w", rel, err)
		}
		s.Dirs++
		for _, e := range ents {
			if e.name == "." || e.name == ".." {
				continue
			}
			if s.Entries++; s.Entries > maxShapeEntries {
				unix.Close(fd)
				return s, errTooLarge
			}
			if e.name == opaqueMarker {
				unix.Close(fd)
				s.Opaque = true
				return s, nil
			}
			typ := e.typ
			if typ == 0 { // the filesystem gave no type
				var st unix.Stat_t
				if err := unix.Fstatat(fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					unix.Close(fd)
					return s, fmt.Errorf("stat %q: %w", path.Join(rel, e.name), err)
				}
				typ = st.Mode & sIFMT
			}
			if typ == sIFDIR {
				stack = append(stack, path.Join(rel, e.name))
			}
		}
		unix.Close(fd)
	}
	return s, nil
}

// shapeFile names the file keeping layer's shape in dir; "" if layer is
// not a valid sha256 digest (its name is then never built into a path).
func shapeFile(dir string, layer digest.Digest) string {
	if dir == "" || layer.Validate() != nil || layer.Algorithm() != digest.SHA256 {
		return ""
	}
	return filepath.Join(dir, layer.Encoded()+".json")
}

// loadShape reads the shape of layer kept in dir. A missing, unreadable or
// malformed file is not an error: the layer is walked again.
func loadShape(dir string, layer digest.Digest) (layerShape, bool) {
	p := shapeFile(dir, layer)
	if p == "" {
		return layerShape{}, false
	}
	b, err := smallfile.Read(p, maxShapeFile)
	if err != nil {
		return layerShape{}, false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s layerShape
	if err := dec.Decode(&s); err != nil || s.Version != shapeVersion {
		return layerShape{}, false
	}
	return s, true
}

// saveShape keeps layer's shape in dir (created 0700 if missing), replacing
// the file whole (atomicfile.Write).
func saveShape(dir string, layer digest.Digest, s layerShape) error {
	p := shapeFile(dir, layer)
	if p == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.Write(p, append(b, '\n'), 0o600)
}

// learnShape makes the mounts of layer answer xattr requests with ENOSYS
// if the layer has no opaque directory: at once if its shape is known
// (kept in memory or in the state dir), else after a walk in the
// background, one walk at a time, from rootfd (which learnShape
// duplicates; the caller keeps its own). The walk belongs to the Manager:
// Close stops it.
func (m *Manager) learnShape(ctx context.Context, layer digest.Digest, ls *layerState, rootfd int) {
	if ls.shapeKnown.Load() {
		return
	}
	if s, ok := loadShape(m.cfg.stateDir, layer); ok {
		ls.setShape(s)
		return
	}
	m.mu.Lock()
	if m.closed || ls.walking {
		m.mu.Unlock()
		return
	}
	fd, err := unix.FcntlInt(uintptr(rootfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		m.mu.Unlock()
		log.G(ctx).WithError(err).WithField("layer", layer).Debug("cannot walk the layer")
		return
	}
	ls.walking = true
	m.walks.Add(1)
	m.mu.Unlock()
	logger := log.G(ctx).WithField("layer", layer)
	go func() {
		defer m.walks.Done()
		defer unix.Close(fd)
		select {
		case m.walkSlot <- struct{}{}:
		case <-m.walkCtx.Done():
			return
		}
		s, err := m.walk(m.walkCtx, fd)
		<-m.walkSlot
		if err != nil {
			if m.walkCtx.Err() == nil {
				logger.WithError(err).Info("layer not walked: its mounts keep answering xattr requests")
			}
			return
		}
		ls.setShape(s)
		if err := saveShape(m.cfg.stateDir, layer, s); err != nil {
			logger.WithError(err).Warn("cannot keep the layer's shape: it will be walked again")
		}
		logger.WithFields(log.Fields{"opaque": s.Opaque, "dirs": s.Dirs, "entries": s.Entries}).Debug("layer walked")
	}()
}

// setShape records a layer's shape for its mounts.
func (ls *layerState) setShape(s layerShape) {
	ls.noXattrs.Store(!s.Opaque)
	ls.shapeKnown.Store(true)
}
