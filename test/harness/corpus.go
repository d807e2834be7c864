package harness

import (
	"fmt"
	"strings"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// Fixture is a named test image above the base layer.
type Fixture struct {
	Name   string
	Layers [][]byte // gzip blobs, bottom first, without the base layer
}

// AppLayers are two layers of ordinary files: a "library" layer and an
// "application" layer, each with n files of size bytes.
func AppLayers(n, size int) [][]byte {
	mk := func(dir string, seed byte) []byte {
		es := []testutil.Entry{testutil.Dir(dir)}
		for i := range n {
			// xorshift: content that compresses like real binaries do
			// (barely), so compressed sizes mean something.
			body := make([]byte, size)
			x := uint64(i+1)*0x9e3779b97f4a7c15 ^ uint64(seed)
			for j := range body {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				body[j] = byte(x)
			}
			f := testutil.File(fmt.Sprintf("%s/file-%03d", dir, i), "")
			f.Body, f.Size = body, int64(size)
			es = append(es, f)
		}
		return testutil.MustLayer(es...)
	}
	return [][]byte{mk("lib", 0x5a), mk("app", 0xa5)}
}

// Deletions is an image whose upper layers delete files and directories,
// make directories opaque, replace files by directories and back, and
// re-create deleted names.
func Deletions() Fixture {
	l1 := testutil.MustLayer(
		testutil.Dir("a"), testutil.File("a/keep", "keep"), testutil.File("a/del", "old"),
		testutil.Dir("a/sub"), testutil.File("a/sub/x", "x"),
		testutil.Dir("opq"), testutil.File("opq/old1", "1"), testutil.Dir("opq/old2"), testutil.File("opq/old2/deep", "d"),
		testutil.Dir("gone"), testutil.File("gone/y", "y"),
		testutil.File("file-then-dir", "f"),
		testutil.Dir("dir-then-file"), testutil.File("dir-then-file/child", "c"),
	)
	l2 := testutil.MustLayer(
		testutil.Dir("a"), testutil.Whiteout("a/del"), testutil.File("a/new", "new"),
		testutil.Dir("opq"), testutil.Opaque("opq"), testutil.File("opq/fresh", "fresh"),
		testutil.Whiteout("gone"),
		testutil.Whiteout("file-then-dir"), testutil.Dir("file-then-dir"), testutil.File("file-then-dir/in", "in"),
		testutil.Whiteout("dir-then-file"), testutil.File("dir-then-file", "now a file"),
	)
	l3 := testutil.MustLayer(
		testutil.Dir("a"), testutil.File("a/del", "re-created"), testutil.Whiteout("a/sub"),
		testutil.Dir("opq"), testutil.Whiteout("opq/fresh"), testutil.Dir("opq/again"),
		testutil.Dir("gone"), testutil.File("gone/back", "back"),
	)
	return Fixture{Name: "deletions", Layers: [][]byte{l1, l2, l3}}
}

// Corpus is the small set of images whose rootfs through CVMFS must equal
// the rootfs containerd unpacks itself: deep trees, odd names, a large
// sparse file, links and special files.
func Corpus(sparseSize int64) []Fixture {
	return []Fixture{Deletions(), deep(), oddNames(), sparse(sparseSize), links(), special()}
}

func deep() Fixture {
	var es []testutil.Entry
	p := "deep"
	for i := range 40 {
		es = append(es, testutil.Dir(p), testutil.File(p+"/f", fmt.Sprint(i)))
		p += fmt.Sprintf("/d%02d", i)
	}
	es = append(es, testutil.Dir("wide"))
	for i := range 600 {
		es = append(es, testutil.File(fmt.Sprintf("wide/entry-%04d", i), strings.Repeat("w", i%17)))
	}
	return Fixture{Name: "deep", Layers: [][]byte{testutil.MustLayer(es...)}}
}

func oddNames() Fixture {
	names := []string{
		"with space", "ünïcødé-名前", "new\nline", "-dash", "tab\tname", strings.Repeat("L", 255),
		".hidden", "..dotdot", "x.wh.notwhiteout", "wh.", "back\\slash", "#%&*?[]{}!$'\"", "~tilde",
		".cvmfscatalog-not", "trailing.",
	}
	es := []testutil.Entry{testutil.Dir("odd")}
	for i, n := range names {
		es = append(es, testutil.File("odd/"+n, fmt.Sprint(i)))
	}
	es = append(es, testutil.Dir("odd/dir with space"), testutil.File("odd/dir with space/ünï", "u"))
	return Fixture{Name: "odd-names", Layers: [][]byte{testutil.MustLayer(es...)}}
}

func sparse(size int64) Fixture {
	f := testutil.File("data/sparse.img", "header")
	f.Size = size
	return Fixture{Name: "sparse", Layers: [][]byte{testutil.MustLayer(testutil.Dir("data"), f, testutil.File("data/small", "s"))}}
}

func links() Fixture {
	return Fixture{Name: "links", Layers: [][]byte{testutil.MustLayer(
		testutil.Dir("l"), testutil.File("l/target", "target"),
		testutil.Symlink("l/rel", "target"), testutil.Symlink("l/abs", "/l/target"),
		testutil.Symlink("l/dangling", "/nowhere"), testutil.Symlink("l/dir", "../l"),
		testutil.Symlink("l/chain", "rel"), testutil.Symlink("l/up", "../../../etc/os-release"),
		testutil.Hardlink("l/hard", "l/target"), testutil.Dir("l/other"), testutil.Hardlink("l/other/hard2", "l/target"),
	)}}
}

func special() Fixture {
	suid := testutil.File("s/setuid", "#!")
	suid.Mode = 0o4755
	sgid := testutil.Dir("s/setgid-dir")
	sgid.Mode = 0o2775
	sticky := testutil.Dir("s/sticky")
	sticky.Mode = 0o1777
	nobody := testutil.File("s/nobody", "n")
	nobody.UID, nobody.GID = 65534, 65534
	big := testutil.File("s/bigids", "b")
	big.UID, big.GID = 123456, 654321
	none := testutil.File("s/mode0", "0")
	none.Mode = 0
	old := testutil.File("s/epoch", "e")
	old.ModTime = time.Unix(0, 0)
	future := testutil.File("s/future", "f")
	future.ModTime = time.Date(2100, 1, 1, 0, 0, 0, 1, time.UTC)
	xattr := testutil.File("s/xattr", "x")
	xattr.Xattrs = map[string]string{"user.origin": "tar"}
	block := testutil.CharDev("s/loop", 7, 0)
	block.Type = '4' // tar.TypeBlock
	return Fixture{Name: "special", Layers: [][]byte{testutil.MustLayer(
		testutil.Dir("s"), suid, sgid, testutil.File("s/setgid-dir/in", "i"), sticky, nobody, big, none, old, future, xattr,
		testutil.Fifo("s/fifo"), testutil.CharDev("s/null", 1, 3), block,
	)}}
}
