package usagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
)

// maxRecordSize bounds a record file, written and read back: a profile of
// the default limit fits many times over; anything larger is not ours.
const maxRecordSize = 256 << 20

// errTooLarge says a record would not fit in a record file.
var errTooLarge = errors.New("record larger than a record file may be")

// tmpPrefix starts the names of writeJSON's temporary files.
const tmpPrefix = ".tmp-"

// writeJSON writes v to path atomically: a temporary file in the same
// directory (tmpPrefix + base + "-" + random), synced, then renamed over
// path. A record of more than limit
// bytes (which readJSON would refuse) is not written: the error wraps
// errTooLarge and path is left as it was.
func writeJSON(path string, v any, limit int64) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	enc := json.NewEncoder(&limitWriter{w: f, left: limit})
	if err := enc.Encode(v); err != nil {
		if errors.Is(err, errTooLarge) {
			return fmt.Errorf("%s: %w (%d bytes)", path, err, limit)
		}
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// removeTemporary removes the temporary files of writes that a crash
// interrupted, in dir: regular files named as writeJSON names them. The
// store is opened by one process at a time (the daemon locks its root), so
// none is being written.
func removeTemporary(ctx context.Context, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !isNotExist(err) {
			log.G(ctx).WithError(err).WithField("path", filepath.Join(dir, e.Name())).Warn("failed to remove a temporary usage record")
		}
	}
}

// limitWriter fails with errTooLarge a write that would take it past left
// bytes, writing none of it.
type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, errTooLarge
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// readJSON decodes the regular file path into v. It returns an error
// wrapping fs.ErrNotExist if there is none, and another error for anything
// that is not a regular file of at most maxRecordSize bytes holding JSON.
// It never follows a symlink.
func readJSON(path string, v any, limit int64) error {
	// O_NONBLOCK: a FIFO put there does not block the open.
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow|nonBlock, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return fmt.Errorf("%s: %d bytes, more than a record holds (%d)", path, fi.Size(), limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > limit {
		return fmt.Errorf("%s grew past %d bytes", path, limit)
	}
	return json.Unmarshal(b, v)
}

// isNotExist reports whether err says a record file does not exist.
// readRecord reads the record file at path into rec, whose version field
// is *version once read. An absent file is no record; an unreadable one, or
// one of another version, is logged (naming it what) and ignored: the next
// write replaces it. It reports whether rec was read.
func readRecord(ctx context.Context, path, what string, rec any, version *int, limit int64) bool {
	err := readJSON(path, rec, limit)
	if isNotExist(err) {
		return false
	}
	if err == nil && *version != recordVersion {
		err = errVersion(*version)
	}
	if err != nil {
		log.G(ctx).WithError(err).WithField("path", path).Warn("ignoring an unreadable " + what)
		return false
	}
	return true
}

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// layerFileName returns the record file name of layer, or an error if
// layer is not a sha256 digest of 64 hex digits (the only names built).
func layerFileName(layer digest.Digest) (string, error) {
	d, err := layerdigest.Parse(string(layer))
	if err != nil {
		return "", err
	}
	return d.Encoded() + ".json", nil
}
