package ducc

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/atomicfile"
)

// ErrUnsupportedLayer is wrapped by WriteLayer's error for a layer that DUCC
// does not ingest (zstd, uncompressed, foreign or non-distributable). Such
// layers are absent from a DUCC repository and containerd downloads them.
var ErrUnsupportedLayer = errors.New("layer not ingested by DUCC")

// gzipLayerTypes are the media types DUCC ingests: gzip-compressed,
// distributable layer tarballs.
var gzipLayerTypes = []string{
	"application/vnd.oci.image.layer.v1.tar+gzip",
	"application/vnd.docker.image.rootfs.diff.tar.gzip",
}

// Ingestible returns nil if DUCC ingests layers of mediaType, and an error
// wrapping ErrUnsupportedLayer that names the reason otherwise.
func Ingestible(mediaType string) error {
	if slices.Contains(gzipLayerTypes, mediaType) {
		return nil
	}
	return fmt.Errorf("media type %q is not a distributable gzip layer: %w", mediaType, ErrUnsupportedLayer)
}

// LayerBlob describes one compressed layer blob to write.
type LayerBlob struct {
	// Digest is the digest of the compressed blob, as in the manifest.
	Digest digest.Digest
	// MediaType is the layer's media type from the manifest.
	MediaType string
	// Origin is the digest of an image config that uses the layer. It is
	// recorded in origin.json (even when the layer is already present);
	// empty records nothing.
	Origin digest.Digest
	// Open returns the compressed blob. It is called only if the layer
	// must be written.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// WriteResult says what WriteLayer did.
type WriteResult struct {
	// Present is true if the layer was already in the repository and
	// nothing but origin.json was written.
	Present bool
	// DiffID is the digest of the uncompressed tar (set when written).
	DiffID digest.Digest
	// DiffSize is the size of the uncompressed tar in bytes (set when written).
	DiffSize int64
	// Entries is the number of tar entries written (set when written).
	Entries int
}

// WriteLayer writes a layer into the repository in DUCC's layout: the
// unpacked tree at .layers/<xx>/<hex>/layerfs with OCI whiteouts kept as
// plain empty files and a zero-byte .cvmfscatalog at its root, plus
// .metadata/layers.json and .metadata/origin.json.
//
// A layer already present is not read again. A layer DUCC would not ingest
// returns an error wrapping ErrUnsupportedLayer before anything is fetched;
// so does, once read, a layer with paths deeper than PATH_MAX.
// The tree is built in a temporary directory beside its final place and
// renamed into it only once complete and verified against blob.Digest, so a
// failed or interrupted write leaves no partial layer behind. Ownership and
// device nodes need root; see extract for what is preserved.
//
// Because layers keep setuid binaries and device nodes, WriteLayer creates a
// missing repository root and .layers directory with mode 0700, and refuses
// (errdefs.ErrFailedPrecondition, nothing fetched) a store that other users
// can reach unless it is mounted nosuid,nodev; in such a store it refuses
// (errdefs.ErrFailedPrecondition, nothing left) a layer that host users
// could rewrite (see checkUnwritable).
func (r *Repo) WriteLayer(ctx context.Context, blob LayerBlob) (WriteResult, error) {
	dir, err := r.LayerDir(blob.Digest)
	if err != nil {
		return WriteResult{}, err
	}
	if err := Ingestible(blob.MediaType); err != nil {
		return WriteResult{}, fmt.Errorf("layer %s: %w", blob.Digest, err)
	}
	shared, err := r.prepareStore()
	if err != nil {
		return WriteResult{}, err
	}
	if _, err := r.Lookup(ctx, blob.Digest); err == nil {
		return WriteResult{Present: true}, r.addOrigin(ctx, blob.Digest, blob.Origin)
	} else if !errdefs.IsNotFound(err) {
		return WriteResult{}, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return WriteResult{}, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), tmpPrefix+blob.Digest.Encoded()[:12]+"-")
	if err != nil {
		return WriteResult{}, err
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	unlock, err := lockTree(tmp)
	if err != nil {
		return WriteResult{}, err
	}
	defer unlock()
	// The tree is written in tmp, 0700 until checked: nobody else can open
	// one of its files meanwhile.
	res, err := writeTree(ctx, tmp, blob)
	if errors.Is(err, syscall.ENAMETOOLONG) {
		// Paths deeper than PATH_MAX: the extraction works on whole paths.
		return WriteResult{}, fmt.Errorf("layer %s has paths too long to write: %w: %w", blob.Digest, err, ErrUnsupportedLayer)
	}
	if err != nil {
		return WriteResult{}, fmt.Errorf("failed to write layer %s: %w", blob.Digest, err)
	}
	if shared {
		if err := checkUnwritable(filepath.Join(tmp, layerFSDir)); err != nil {
			return WriteResult{}, fmt.Errorf("layer %s: %w", blob.Digest, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return WriteResult{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, lerr := r.Lookup(ctx, blob.Digest); lerr == nil {
			// Another writer won the race; its copy is as good as ours.
			return WriteResult{Present: true}, r.addOrigin(ctx, blob.Digest, blob.Origin)
		}
		return WriteResult{}, fmt.Errorf("failed to move layer %s into place: %w", blob.Digest, err)
	}
	tmp = ""
	return res, nil
}

// writeTree fills dir with layerfs and .metadata for blob.
func writeTree(ctx context.Context, dir string, blob LayerBlob) (WriteResult, error) {
	rc, err := blob.Open(ctx)
	if err != nil {
		return WriteResult{}, err
	}
	defer rc.Close()

	compressed := digest.SHA256.Digester()
	zr, err := gzip.NewReader(io.TeeReader(rc, compressed.Hash()))
	if err != nil {
		return WriteResult{}, fmt.Errorf("open gzip stream: %w", err)
	}
	uncompressed := sha256.New()
	counter := &countingWriter{w: uncompressed}
	tarStream := io.TeeReader(zr, counter)

	layerfs := filepath.Join(dir, layerFSDir)
	entries, err := extract(ctx, layerfs, tarStream)
	if err != nil {
		return WriteResult{}, err
	}
	// Read to the end: the tar reader stops at the end-of-archive marker,
	// but the digests cover the padding and gzip trailer too.
	if _, err := io.Copy(counter, zr); err != nil {
		return WriteResult{}, fmt.Errorf("read to end of layer: %w", err)
	}
	if _, err := io.Copy(compressed.Hash(), rc); err != nil {
		return WriteResult{}, fmt.Errorf("read to end of blob: %w", err)
	}
	if got := compressed.Digest(); got != blob.Digest {
		return WriteResult{}, fmt.Errorf("blob digest is %s, want %s: %w", got, blob.Digest, errdefs.ErrFailedPrecondition)
	}
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(uncompressed.Sum(nil)))

	meta := filepath.Join(dir, metadataDir)
	if err := os.Mkdir(meta, 0o755); err != nil {
		return WriteResult{}, err
	}
	infos, err := LayersJSON(blob.Digest, diffID, counter.n, time.Now().UTC())
	if err != nil {
		return WriteResult{}, err
	}
	if err := atomicfile.Write(filepath.Join(meta, layersJSON), infos, 0o644); err != nil {
		return WriteResult{}, err
	}
	origins := []string{}
	if blob.Origin != "" {
		origins = []string{blob.Origin.String()}
	}
	if err := writeJSON(filepath.Join(meta, originJSON), origins); err != nil {
		return WriteResult{}, err
	}
	return WriteResult{DiffID: diffID, DiffSize: counter.n, Entries: entries}, nil
}

// Origins returns the image config digests recorded in the layer's
// origin.json; errdefs.ErrNotFound if the layer has none. The file is read
// as Metadata reads layers.json.
func (r *Repo) Origins(layer digest.Digest) ([]string, error) {
	origins, err := r.origins(context.Background(), layer)
	if err != nil {
		return nil, fmt.Errorf("origin of layer %s: %w", layer, err)
	}
	return origins, nil
}

func (r *Repo) origins(ctx context.Context, layer digest.Digest) ([]string, error) {
	var origins []string
	if err := r.readMetadata(ctx, layer, originJSON, &origins); err != nil {
		return nil, err
	}
	return origins, nil
}

// addOrigin records origin in the origin.json of the layer, keeping the
// list sorted and free of duplicates. Like every path into the repository,
// the layer's directory and its .metadata are reached through no symlink.
func (r *Repo) addOrigin(ctx context.Context, layer, origin digest.Digest) error {
	if origin == "" {
		return nil
	}
	origins, err := r.origins(ctx, layer)
	if err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	if slices.Contains(origins, origin.String()) {
		return nil
	}
	origins = append(origins, origin.String())
	slices.Sort(origins)

	rel, err := r.layerRel(layer)
	if err != nil {
		return err
	}
	layerfd, err := r.openBeneath(rel, true)
	if err != nil {
		return r.pathError(rel, err)
	}
	defer unix.Close(layerfd)
	if err := unix.Mkdirat(layerfd, metadataDir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("create %s: %w", filepath.Join(r.root, rel, metadataDir), err)
	}
	metafd, err := unix.Openat(layerfd, metadataDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return r.pathError(filepath.Join(rel, metadataDir), err)
	}
	defer unix.Close(metafd)
	return writeJSONAt(metafd, originJSON, origins)
}

// writeJSON writes v to path, as JSON and a newline, with
// atomicfile.Write: never through a symlink, readable by all (0644, less
// the umask).
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// writeJSONAt writes v to name in dirfd as writeJSON does.
func writeJSONAt(dirfd int, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteAt(dirfd, name, append(b, '\n'), 0o644)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
