//go:build linux

package ducc

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// extract unpacks the tar stream r into root, which must not exist, and
// returns the number of entries written. It keeps what DUCC keeps and drops
// what DUCC drops:
//
//   - modes (with setuid, setgid, sticky), uids and gids (only when running
//     as root; otherwise files belong to the caller), mtimes with
//     nanoseconds, symlinks, character and block devices, fifos;
//   - OCI whiteouts (.wh.<name>, .wh..wh..opq) stay plain empty files;
//   - hardlinks become independent copies of their target;
//   - xattrs are dropped;
//   - PAX global headers are ignored;
//   - long runs of zeros become holes, so a sparse file stays sparse;
//   - a zero-byte .cvmfscatalog is added at the root.
//
// An entry whose name or hardlink target escapes root, or whose parent is
// not a directory written by this archive (a symlink, say), is an error:
// nothing is ever written through a symlink.
func extract(ctx context.Context, root string, r io.Reader) (int, error) {
	if err := os.Mkdir(root, 0o755); err != nil {
		return 0, err
	}
	x := &extractor{
		root:   root,
		kinds:  map[string]byte{".": tar.TypeDir},
		dirs:   map[string]*tar.Header{},
		asRoot: os.Geteuid() == 0,
	}
	tr := tar.NewReader(r)
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, fmt.Errorf("read tar: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			// PAX global headers carry archive-wide records, not a file:
			// ignored, as containerd's applier does. Its name is
			// arbitrary and must not replace an entry of that name.
			continue
		}
		if err := x.entry(ctx, hdr, tr); err != nil {
			return n, fmt.Errorf("tar entry %q: %w", hdr.Name, err)
		}
		n++
	}
	// DUCC ingests with --catalog: a nested-catalog marker at the root,
	// written before directory times are set so the root keeps its mtime.
	// Whatever the archive put there goes first: writing through a
	// symlink (or opening a fifo) of that name must not happen.
	if err := x.remove(CatalogMarker); err != nil {
		return n, err
	}
	marker, err := os.OpenFile(filepath.Join(root, CatalogMarker), os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		return n, err
	}
	if err := marker.Close(); err != nil {
		return n, err
	}
	return n, x.finishDirs()
}

type extractor struct {
	root   string
	asRoot bool
	// kinds maps every path written so far (relative, cleaned) to its tar
	// type flag; parents are checked against it instead of the filesystem.
	kinds map[string]byte
	// dirs holds directory headers whose metadata is applied at the end,
	// once nothing more is written inside them.
	dirs map[string]*tar.Header
	buf  []byte
}

// relName cleans a tar name to a path relative to the root, rejecting names
// that escape it. Leading slashes are dropped, as containerd does.
func relName(name string) (string, error) {
	rel := path.Clean(strings.TrimLeft(name, "/"))
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("path escapes the layer root")
	}
	return rel, nil
}

func (x *extractor) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	rel, err := relName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("layer root is not a directory")
		}
		x.dirs[rel] = hdr
		return nil
	}
	if err := x.parents(path.Dir(rel)); err != nil {
		return err
	}
	full := filepath.Join(x.root, rel)
	if old, ok := x.kinds[rel]; ok {
		if old == tar.TypeDir && hdr.Typeflag == tar.TypeDir {
			x.dirs[rel] = hdr
			return nil
		}
		if err := x.remove(rel); err != nil {
			return err
		}
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(full, 0o700); err != nil {
			return err
		}
		x.kinds[rel] = tar.TypeDir
		x.dirs[rel] = hdr
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, '\x00':
		if err := x.writeFile(ctx, full, r, hdr.Size); err != nil {
			return err
		}
		x.kinds[rel] = tar.TypeReg
	case tar.TypeLink:
		return x.copyLink(ctx, rel, hdr.Linkname)
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, full); err != nil {
			return err
		}
		x.kinds[rel] = tar.TypeSymlink
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(full, mode|0o600, int(dev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		x.kinds[rel] = hdr.Typeflag
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return x.setMeta(full, hdr, hdr.Typeflag == tar.TypeSymlink)
}

// parents makes sure every component of dir is a directory, creating
// missing ones as root-owned 0755 directories (what containerd does for
// implicit parents).
func (x *extractor) parents(dir string) error {
	if dir == "." {
		return nil
	}
	if kind, ok := x.kinds[dir]; ok {
		if kind != tar.TypeDir {
			return fmt.Errorf("parent %q is not a directory", dir)
		}
		return nil
	}
	if err := x.parents(path.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(filepath.Join(x.root, dir), 0o755); err != nil {
		return err
	}
	x.kinds[dir] = tar.TypeDir
	return nil
}

// remove deletes an earlier entry that a later one replaces.
func (x *extractor) remove(rel string) error {
	if err := os.RemoveAll(filepath.Join(x.root, rel)); err != nil {
		return err
	}
	delete(x.kinds, rel)
	delete(x.dirs, rel)
	prefix := rel + "/"
	for p := range x.kinds {
		if strings.HasPrefix(p, prefix) {
			delete(x.kinds, p)
			delete(x.dirs, p)
		}
	}
	return nil
}

// writeFile copies size bytes from r into a new file, leaving holes where
// whole blocks are zero.
func (x *extractor) writeFile(ctx context.Context, full string, r io.Reader, size int64) error {
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if x.buf == nil {
		x.buf = make([]byte, 128<<10)
	}
	if err := sparseCopy(ctx, f, io.LimitReader(r, size), x.buf); err != nil {
		f.Close()
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sparseCopy checks ctx between blocks: a tar entry can declare a huge
// sparse file whose holes the tar reader expands into zeros.
func sparseCopy(ctx context.Context, f *os.File, r io.Reader, buf []byte) error {
	zeros := make([]byte, len(buf))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zeros[:n]) {
				if _, serr := f.Seek(int64(n), io.SeekCurrent); serr != nil {
					return serr
				}
			} else if _, werr := f.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// copyLink writes a hardlink as an independent copy of its target, with
// the target's metadata (a hardlink shares its inode, so that is what the
// link showed).
func (x *extractor) copyLink(ctx context.Context, rel, linkname string) error {
	target, err := relName(linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if x.kinds[target] != tar.TypeReg {
		return fmt.Errorf("hardlink target %q is not a regular file of this layer", linkname)
	}
	src, err := os.Open(filepath.Join(x.root, target))
	if err != nil {
		return err
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return err
	}
	full := filepath.Join(x.root, rel)
	if err := x.writeFile(ctx, full, src, st.Size); err != nil {
		return err
	}
	x.kinds[rel] = tar.TypeReg
	return x.setMeta(full, &tar.Header{
		Uid:        int(st.Uid),
		Gid:        int(st.Gid),
		Mode:       int64(st.Mode & 0o7777),
		ModTime:    time.Unix(st.Mtim.Unix()),
		AccessTime: time.Unix(st.Atim.Unix()),
	}, false)
}

// setMeta applies ownership (as root only), permission bits (not on
// symlinks, which have none) and times, in that order: chown clears the
// setuid and setgid bits.
func (x *extractor) setMeta(full string, hdr *tar.Header, symlink bool) error {
	if x.asRoot {
		if err := os.Lchown(full, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if !symlink {
		if err := unix.Chmod(full, uint32(hdr.Mode)&0o7777); err != nil {
			return fmt.Errorf("chmod %s: %w", full, err)
		}
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, full, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", full, err)
	}
	return nil
}

// finishDirs applies directory metadata deepest first, after every entry
// is written (writing into a directory changes its mtime, and a read-only
// mode would stop a non-root writer).
func (x *extractor) finishDirs() error {
	rels := make([]string, 0, len(x.dirs))
	for rel := range x.dirs {
		rels = append(rels, rel)
	}
	slices.SortFunc(rels, func(a, b string) int {
		return strings.Count(b, "/") - strings.Count(a, "/")
	})
	for _, rel := range rels {
		if err := x.setMeta(filepath.Join(x.root, rel), x.dirs[rel], false); err != nil {
			return err
		}
	}
	return nil
}
