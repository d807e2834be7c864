package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Epoch is the fixed mtime of entries that set none, so layers are
// reproducible byte for byte. It has a non-zero nanosecond part on purpose.
var Epoch = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// Entry is one tar entry of a test layer. Constructors (Dir, File, ...) fill
// the usual fields; change the rest directly.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	ModTime  time.Time
	// Body is the start of a regular file's content; the file is padded
	// with zeros up to Size when Size is larger (a sparse-looking file).
	Body     []byte
	Size     int64
	Linkname string
	Major    int64
	Minor    int64
	// Xattrs are written as PAX records (DUCC drops them).
	Xattrs map[string]string
}

// Dir is a directory entry with mode 0755.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: 0o755} }

// File is a regular file with mode 0644 and the given content.
func File(name, body string) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: 0o644, Body: []byte(body), Size: int64(len(body))}
}

// Symlink is a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Linkname: target}
}

// Hardlink is a hard link to the earlier entry target.
func Hardlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Mode: 0o644, Linkname: target}
}

// Fifo is a named pipe.
func Fifo(name string) Entry { return Entry{Name: name, Type: tar.TypeFifo, Mode: 0o600} }

// CharDev is a character device.
func CharDev(name string, major, minor int64) Entry {
	return Entry{Name: name, Type: tar.TypeChar, Mode: 0o666, Major: major, Minor: minor}
}

// Whiteout deletes name (a path) from the layers below: an empty file
// .wh.<base> in name's directory.
func Whiteout(name string) Entry {
	dir, base := path.Split(name)
	return Entry{Name: dir + ".wh." + base, Type: tar.TypeReg, Mode: 0o644}
}

// Opaque hides everything the layers below have in dir: an empty file
// dir/.wh..wh..opq.
func Opaque(dir string) Entry {
	return Entry{Name: path.Join(dir, ".wh..wh..opq"), Type: tar.TypeReg, Mode: 0o644}
}

// Tar returns the entries as an uncompressed tar stream, in order.
func Tar(entries []Entry) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeTar(&buf, entries); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer returns the entries as a gzip-compressed tar, the form a registry
// serves and DUCC ingests. The output is deterministic.
func Layer(entries []Entry) ([]byte, error) {
	return compressed(entries, func(w io.Writer) (io.WriteCloser, error) {
		return gzip.NewWriterLevel(w, gzip.BestSpeed)
	})
}

// compressed writes the entries as a tar through the compressor from
// newWriter.
func compressed(entries []Entry, newWriter func(io.Writer) (io.WriteCloser, error)) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := newWriter(&buf)
	if err != nil {
		return nil, err
	}
	if err := writeTar(zw, entries); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// MustLayer is Layer for fixtures known to be valid; it panics on error.
func MustLayer(entries ...Entry) []byte {
	b, err := Layer(entries)
	if err != nil {
		panic(err)
	}
	return b
}

func writeTar(w io.Writer, entries []Entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		mtime := e.ModTime
		if mtime.IsZero() {
			mtime = Epoch
		}
		size := e.Size
		if e.Type != tar.TypeReg {
			size = 0
		} else if size < int64(len(e.Body)) {
			size = int64(len(e.Body))
		}
		hdr := &tar.Header{
			Name:       e.Name,
			Typeflag:   e.Type,
			Mode:       e.Mode,
			Uid:        e.UID,
			Gid:        e.GID,
			Size:       size,
			ModTime:    mtime,
			AccessTime: mtime,
			Linkname:   e.Linkname,
			Devmajor:   e.Major,
			Devminor:   e.Minor,
			Format:     tar.FormatPAX,
		}
		for k, v := range e.Xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("tar header %q: %w", e.Name, err)
		}
		if size > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				return err
			}
			if pad := size - int64(len(e.Body)); pad > 0 {
				if _, err := io.CopyN(tw, zeroReader{}, pad); err != nil {
					return err
				}
			}
		}
	}
	return tw.Close()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ZstdLayer returns the entries as a zstd-compressed tar: a layer DUCC does
// not ingest, so it must always be downloaded.
func ZstdLayer(entries ...Entry) ([]byte, error) {
	return compressed(entries, func(w io.Writer) (io.WriteCloser, error) {
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	})
}
