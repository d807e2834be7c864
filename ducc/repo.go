package ducc

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/internal/layerdigest"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// Names inside a DUCC repository.
const (
	// DefaultRepository is the repository used when none is configured.
	DefaultRepository = "unpacked.cern.ch"
	// CatalogMarker is the zero-byte nested-catalog marker that DUCC leaves
	// at the root of every layerfs (and wherever a catalog was nested).
	CatalogMarker = ".cvmfscatalog"

	layersDir   = ".layers"
	layerFSDir  = "layerfs"
	metadataDir = ".metadata"
	layersJSON  = "layers.json"
	originJSON  = "origin.json"
)

// DefaultMountpoint returns /cvmfs/<repository>.
func DefaultMountpoint(repository string) string {
	return filepath.Join("/cvmfs", repository)
}

// Repo is a DUCC repository rooted at an absolute path. It is immutable and
// safe for concurrent use.
type Repo struct {
	root string
}

// New returns the repository rooted at root (for example
// /cvmfs/unpacked.cern.ch). It does not touch the filesystem.
func New(root string) *Repo {
	return &Repo{root: filepath.Clean(root)}
}

// Root returns the repository's root directory.
func (r *Repo) Root() string { return r.root }

// LayerDir returns <root>/.layers/<hex[0:2]>/<hex> for a valid digest; an
// invalid digest returns errdefs.ErrInvalidArgument and no path.
func (r *Repo) LayerDir(layer digest.Digest) (string, error) {
	d, err := layerdigest.Parse(layer.String())
	if err != nil {
		return "", err
	}
	hex := d.Encoded()
	return filepath.Join(r.root, layersDir, hex[:2], hex), nil
}

// UnpackedDir returns the path of the layer's unpacked tree (DUCC's
// layerfs directory), without checking that it exists.
func (r *Repo) UnpackedDir(layer digest.Digest) (string, error) {
	dir, err := r.LayerDir(layer)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, layerFSDir), nil
}

// Lookup returns the path of the layer's layerfs directory after checking,
// as OpenLayer does, that it is a directory reached from the repository
// root through no symlink. It returns OpenLayer's errors. The path is only
// good for reading the layer's metadata or for display: anything that
// serves the layer must use OpenLayer, since the path could be swapped for
// a symlink after the check.
func (r *Repo) Lookup(ctx context.Context, layer digest.Digest) (string, error) {
	f, err := r.OpenLayer(ctx, layer)
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", layer, err)
	}
	path := f.Name()
	return path, f.Close()
}

// LayerInfo is one entry of .metadata/layers.json, with DUCC's field names
// and in DUCC's order (its StoreLayerInfo): ID is the hex of the diff ID
// without algorithm, Created an RFC 3339 time, DiffDigest the diff ID and
// DiffSize the uncompressed size.
type LayerInfo struct {
	ID                   string `json:"id,omitempty"`
	Created              string `json:"created,omitempty"`
	CompressedDiffDigest string `json:"compressed-diff-digest,omitempty"`
	DiffDigest           string `json:"diff-digest,omitempty"`
	DiffSize             int64  `json:"diff-size,omitempty"`
}

// LayersJSON returns the layers.json DUCC writes for a layer (compressed
// digest layer) whose uncompressed tar has digest diffID and size diffSize:
// a list of one entry, indented by one space.
func LayersJSON(layer, diffID digest.Digest, diffSize int64, created time.Time) ([]byte, error) {
	return json.MarshalIndent([]LayerInfo{{
		ID:                   diffID.Encoded(),
		Created:              created.Format(time.RFC3339Nano),
		CompressedDiffDigest: layer.String(),
		DiffDigest:           diffID.String(),
		DiffSize:             diffSize,
	}}, "", " ")
}

// Metadata reads the layer's .metadata/layers.json, resolved beneath the
// repository root through no symlink and only if it is a regular file. It
// returns errdefs.ErrNotFound if the file is absent, and OpenLayer's other
// errors.
func (r *Repo) Metadata(ctx context.Context, layer digest.Digest) ([]LayerInfo, error) {
	var infos []LayerInfo
	if err := r.readMetadata(ctx, layer, layersJSON, &infos); err != nil {
		return nil, fmt.Errorf("metadata of layer %s: %w", layer, err)
	}
	return infos, nil
}

// readMetadata decodes the JSON file name of the layer's .metadata into v,
// read as Metadata reads layers.json.
func (r *Repo) readMetadata(ctx context.Context, layer digest.Digest, name string, v any) error {
	rel, err := r.layerRel(layer, metadataDir, name)
	if err != nil {
		return err
	}
	b, err := r.readFile(ctx, rel)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", filepath.Join(r.root, rel), err)
	}
	return nil
}

// DiffID returns the digest of the layer's uncompressed tar (its diff ID)
// recorded in layers.json as diff-digest. The file is repository content,
// so hostile input: it is read as Metadata reads it (bounded, through no
// symlink) and the value must be sha256 with 64 lower-case hex digits.
// Entries that record another compressed digest are ignored.
//
// It returns an error wrapping errdefs.ErrNotFound when the repository
// does not hold the layer (Lookup's), errdefs.ErrUnavailable when the
// repository does not answer, and errdefs.ErrFailedPrecondition when it
// holds the layer but no usable diff ID: layers.json missing, not a regular
// file, too large, not JSON, recording no diff-digest, a malformed one or
// two that disagree. Never a guess.
func (r *Repo) DiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error) {
	if _, err := r.Lookup(ctx, layer); err != nil {
		return "", fmt.Errorf("diff id: %w", err)
	}
	diffID, err := r.recordedDiffID(ctx, layer)
	if err != nil && !errdefs.IsUnavailable(err) {
		// The layer is there: whatever is wrong with its metadata is
		// not "not found" to a caller.
		err = fmt.Errorf("%v: %w", err, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		return "", fmt.Errorf("diff id of layer %s: %w", layer, err)
	}
	return diffID, nil
}

func (r *Repo) recordedDiffID(ctx context.Context, layer digest.Digest) (digest.Digest, error) {
	var infos []LayerInfo
	if err := r.readMetadata(ctx, layer, layersJSON, &infos); err != nil {
		return "", err
	}
	var diffID digest.Digest
	for _, in := range infos {
		if in.DiffDigest == "" || (in.CompressedDiffDigest != "" && in.CompressedDiffDigest != layer.String()) {
			continue
		}
		d, err := layerdigest.Parse(in.DiffDigest)
		if err != nil {
			return "", fmt.Errorf("diff-digest in %s: %w", layersJSON, err)
		}
		if diffID != "" && d != diffID {
			return "", fmt.Errorf("%s records both %s and %s", layersJSON, diffID, d)
		}
		diffID = d
	}
	if diffID == "" {
		return "", fmt.Errorf("no diff-digest in %s", layersJSON)
	}
	return diffID, nil
}

// DiffSize returns the uncompressed size recorded in layers.json. It
// returns an error wrapping errdefs.ErrNotFound when the metadata is absent
// or records no positive diff-size, and an error when it cannot be read or
// parsed; never a made-up size.
func (r *Repo) DiffSize(ctx context.Context, layer digest.Digest) (int64, error) {
	infos, err := r.Metadata(ctx, layer)
	if err != nil {
		return 0, fmt.Errorf("size of layer %s: %w", layer, err)
	}
	for _, in := range infos {
		if in.DiffSize > 0 {
			return in.DiffSize, nil
		}
	}
	return 0, fmt.Errorf("size of layer %s: no positive diff-size in %s: %w", layer, layersJSON, errdefs.ErrNotFound)
}

// PublishedProfile returns the paths listed in the layer's published
// access profile (.metadata/access-profile.json, see
// usage.PublishedProfile), read as Metadata reads layers.json. It returns
// an error wrapping errdefs.ErrNotFound when there is none.
func (r *Repo) PublishedProfile(ctx context.Context, layer digest.Digest) ([]string, error) {
	rel, err := r.layerRel(layer, metadataDir, usage.PublishedProfileName)
	if err != nil {
		return nil, err
	}
	b, err := r.readFile(ctx, rel)
	if err != nil {
		return nil, err
	}
	return usage.ParsePublishedProfile(b, layer)
}
