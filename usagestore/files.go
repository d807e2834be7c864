package usagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/atomicfile"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/smallfile"
)

// maxRecordSize bounds a record file, written and read back: a profile of
// the default limit fits many times over; anything larger is not ours.
const maxRecordSize = 256 << 20

// errTooLarge says a record would not fit in a record file.
var errTooLarge = errors.New("record larger than a record file may be")

// writeJSON writes v to path atomically (atomicfile.Write, 0600). A
// record of more than limit bytes (which readJSON would refuse) is not
// written: the error wraps errTooLarge and path is left as it was.
func writeJSON(path string, v any, limit int64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if int64(len(b)) > limit {
		return fmt.Errorf("%s: %w (%d bytes)", path, errTooLarge, limit)
	}
	return atomicfile.Write(path, b, 0o600)
}

// removeTemporary removes the temporary files of writes that a crash
// interrupted, in dir: regular files named as atomicfile names them. The
// store is opened by one process at a time (the daemon locks its root), so
// none is being written.
func removeTemporary(ctx context.Context, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), atomicfile.TempPrefix) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !isNotExist(err) {
			log.G(ctx).WithError(err).WithField("path", filepath.Join(dir, e.Name())).Warn("failed to remove a temporary usage record")
		}
	}
}

// readJSON decodes the regular file path into v. It returns an error
// wrapping fs.ErrNotExist if there is none, and another error for anything
// that is not a regular file of at most limit bytes holding JSON
// (smallfile.Read). It never follows a symlink.
func readJSON(path string, v any, limit int64) error {
	b, err := smallfile.Read(path, limit)
	if err != nil {
		return err
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
