package usage

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
)

// PublishedProfileName is the file, in a layer's .metadata directory of a
// DUCC repository, that lists what workloads read of the layer, for nodes
// that never ran them to prefetch (cvmfsctl profile --publish writes it
// from a node's usage records).
const PublishedProfileName = "access-profile.json"

// PublishedProfileVersion is the format's version.
const PublishedProfileVersion = 1

// MaxPublishedFiles bounds the paths of a published profile.
const MaxPublishedFiles = 100_000

// PublishedProfile is the content of PublishedProfileName: the paths
// workloads read of Layer (relative to the layer root, as the FUSE layer
// presents them), most useful first.
type PublishedProfile struct {
	Version int           `json:"version"`
	Layer   digest.Digest `json:"layer"`
	Files   []string      `json:"files"`
}

// PublishProfile returns the published profile of u: its paths, most bytes
// first, at most MaxPublishedFiles.
func PublishProfile(u LayerUsage) PublishedProfile {
	p := PublishedProfile{Version: PublishedProfileVersion, Layer: u.Layer, Files: []string{}}
	for _, f := range u.Profile {
		if len(p.Files) == MaxPublishedFiles {
			break
		}
		if ValidProfilePath(f.Path) {
			p.Files = append(p.Files, f.Path)
		}
	}
	return p
}

// ParsePublishedProfile parses b as the published profile of layer. It is
// repository content, so hostile input: another version or layer, or more
// than MaxPublishedFiles paths, is an error; paths that are not clean and
// relative (ValidProfilePath) are dropped.
func ParsePublishedProfile(b []byte, layer digest.Digest) ([]string, error) {
	var p PublishedProfile
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("published profile: %w", err)
	}
	if p.Version != PublishedProfileVersion {
		return nil, fmt.Errorf("published profile: version %d, want %d", p.Version, PublishedProfileVersion)
	}
	if p.Layer != layer {
		return nil, fmt.Errorf("published profile: of layer %q, want %s", p.Layer, layer)
	}
	if len(p.Files) > MaxPublishedFiles {
		return nil, errors.New("published profile: too many files")
	}
	out := p.Files[:0]
	for _, f := range p.Files {
		if ValidProfilePath(f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// ValidProfilePath reports whether p is a clean relative path of a layer
// (no "..", no leading "/", no NUL, at most 4096 bytes).
func ValidProfilePath(p string) bool {
	return p != "" && p != "." && len(p) <= 4096 && !strings.ContainsRune(p, 0) && !strings.HasPrefix(p, "/") &&
		path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}
