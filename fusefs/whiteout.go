package fusefs

import "strings"

// Names with a meaning in OCI layers and DUCC repositories.
const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes aufs metadata names (".wh..wh..opq",
	// ".wh..wh..plnk", ...); none of them is a whiteout of a real name.
	whiteoutMeta = ".wh..wh."
	opaqueMarker = ".wh..wh..opq"
	// catalogMarker is ducc.CatalogMarker; fusefs does not import ducc so
	// that it can serve any layer directory. It is hidden at the layer
	// root only (see classifyAt).
	catalogMarker = ".cvmfscatalog"
)

// Extended attributes that make overlayfs treat a directory as opaque: the
// trusted one for overlay mounted by root, the user one for rootless
// overlay with "userxattr".
var opaqueXattrs = []string{"trusted.overlay.opaque", "user.overlay.opaque"}

// kind says what a backing directory entry becomes in the presented tree.
type kind int

const (
	kindPlain    kind = iota // presented as is
	kindWhiteout             // ".wh.<target>": presented as <target>, char 0:0
	kindOpaque               // ".wh..wh..opq": hidden, marks its directory opaque
	kindHidden               // hidden: catalog marker or other aufs metadata
)

// classify returns what the backing entry name becomes at the layer root
// and, for a whiteout, the name it hides.
func classify(name string) (k kind, target string) {
	switch {
	case name == catalogMarker:
		return kindHidden, ""
	case name == opaqueMarker:
		return kindOpaque, ""
	case strings.HasPrefix(name, whiteoutMeta):
		return kindHidden, ""
	case strings.HasPrefix(name, whiteoutPrefix):
		target = name[len(whiteoutPrefix):]
		if target == "" || target == "." || target == ".." {
			return kindHidden, ""
		}
		return kindWhiteout, target
	default:
		return kindPlain, ""
	}
}

// classifyAt is classify for an entry of the layer root (atRoot) or of a
// directory below it. DUCC's nested-catalog marker is at the layer root
// (cvmfs_server ingest --catalog), where an image's own root
// ".cvmfscatalog" cannot be told from it: hidden there. Below the root a
// ".cvmfscatalog" is the image's own file (CVMFS nests a catalog there
// too, and keeps the file and its bytes): shown, as a pull shows it.
func classifyAt(name string, atRoot bool) (k kind, target string) {
	if name == catalogMarker && !atRoot {
		return kindPlain, ""
	}
	return classify(name)
}

// presentable reports whether name can be looked up in a directory of the
// presented tree (atRoot: the layer root) at all: marker names never can,
// whatever exists behind them.
func presentable(name string, atRoot bool) bool {
	k, _ := classifyAt(name, atRoot)
	return k == kindPlain
}

// isOpaqueXattr reports whether attr is one of the opaque attributes.
func isOpaqueXattr(attr string) bool {
	return attr == opaqueXattrs[0] || attr == opaqueXattrs[1]
}

// dirent is one backing directory entry as getdents reports it.
type dirent struct {
	name string
	typ  uint32 // S_IFMT bits, 0 if unknown
	ino  uint64
}

// presented is one entry of a translated listing.
type presented struct {
	name    string // the name shown
	backing string // the backing name to stat: name, or ".wh."+name
	typ     uint32 // S_IFMT bits, S_IFCHR for a whiteout
	ino     uint64 // backing inode number
}

// translate turns a backing directory listing into the presented one, in
// the backing order. dropWhiteouts is set inside an opaque subtree, atRoot
// for the layer root (see classifyAt). A real
// entry wins over a whiteout of the same name (the layer deleted the lower
// entry and created a new one). opaque reports whether the listing holds
// the opaque marker.
func translate(ents []dirent, dropWhiteouts, atRoot bool) (out []presented, opaque bool) {
	real := make(map[string]bool, len(ents))
	for _, e := range ents {
		if k, _ := classifyAt(e.name, atRoot); k == kindPlain {
			real[e.name] = true
		}
	}
	out = make([]presented, 0, len(ents))
	for _, e := range ents {
		k, target := classifyAt(e.name, atRoot)
		switch k {
		case kindPlain:
			out = append(out, presented{name: e.name, backing: e.name, typ: e.typ, ino: e.ino})
		case kindWhiteout:
			if dropWhiteouts || real[target] || !presentable(target, atRoot) {
				continue
			}
			out = append(out, presented{name: target, backing: e.name, typ: sIFCHR, ino: e.ino})
		case kindOpaque:
			opaque = true
		}
	}
	return out, opaque
}
