package ducc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
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
	d, err := ParseDigest(layer.String())
	if err != nil {
		return "", err
	}
	hex := d.Encoded()
	return filepath.Join(r.root, layersDir, hex[:2], hex), nil
}

// LayerFS returns the path of the layer's unpacked tree, without checking
// that it exists.
func (r *Repo) LayerFS(layer digest.Digest) (string, error) {
	dir, err := r.LayerDir(layer)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, layerFSDir), nil
}

// Lookup returns the layer's layerfs directory if it exists and is a
// directory. It returns errdefs.ErrNotFound if the layer is absent,
// errdefs.ErrInvalidArgument for a malformed digest, and
// errdefs.ErrUnavailable if ctx ends first: a stat on a stuck CVMFS client
// can hang for minutes, so the stat runs in its own goroutine and is
// abandoned (it finishes on its own) when ctx is done.
func (r *Repo) Lookup(ctx context.Context, layer digest.Digest) (string, error) {
	path, err := r.LayerFS(layer)
	if err != nil {
		return "", err
	}
	fi, err := statContext(ctx, path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("layer %s: %s is not a directory: %w", layer, path, errdefs.ErrNotFound)
	}
	return path, nil
}

func statContext(ctx context.Context, path string) (fs.FileInfo, error) {
	type result struct {
		fi  fs.FileInfo
		err error
	}
	ch := make(chan result, 1) // buffered: an abandoned stat must not block
	go func() {
		fi, err := os.Stat(path)
		ch <- result{fi, err}
	}()
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("stat %s: %w: %w", path, ctx.Err(), errdefs.ErrUnavailable)
	case res := <-ch:
		if errors.Is(res.err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat %s: %w", path, errdefs.ErrNotFound)
		}
		if res.err != nil {
			return nil, fmt.Errorf("stat %s: %w: %w", path, res.err, errdefs.ErrUnavailable)
		}
		return res.fi, nil
	}
}

// LayerInfo is one entry of .metadata/layers.json.
type LayerInfo struct {
	ID                   string `json:"id"`
	CompressedDiffDigest string `json:"compressed-diff-digest"`
	DiffDigest           string `json:"diff-digest"`
	DiffSize             int64  `json:"diff-size"`
	Created              string `json:"created,omitempty"`
}

// Metadata reads the layer's .metadata/layers.json. It returns
// errdefs.ErrNotFound if the file is absent.
func (r *Repo) Metadata(ctx context.Context, layer digest.Digest) ([]LayerInfo, error) {
	dir, err := r.LayerDir(layer)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, metadataDir, layersJSON)
	if _, err := statContext(ctx, path); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var infos []LayerInfo
	if err := json.Unmarshal(b, &infos); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return infos, nil
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
