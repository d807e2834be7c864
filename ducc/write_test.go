//go:build linux

package ducc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

const gzipType = "application/vnd.oci.image.layer.v1.tar+gzip"

// blobOf returns a LayerBlob serving b and a counter of how often it was opened.
func blobOf(b []byte, origin digest.Digest) (ducc.LayerBlob, *int) {
	opened := new(int)
	return ducc.LayerBlob{
		Digest:    digest.FromBytes(b),
		MediaType: gzipType,
		Origin:    origin,
		Open: func(context.Context) (io.ReadCloser, error) {
			*opened++
			return io.NopCloser(bytes.NewReader(b)), nil
		},
	}, opened
}

func TestWriteLayerPreservesMetadata(t *testing.T) {
	ctx := context.Background()
	mtime := time.Date(2023, 1, 2, 3, 4, 5, 987654321, time.UTC)
	setuid := testutil.File("bin/su", "#!")
	setuid.Mode, setuid.UID, setuid.GID = 0o4755, 1000, 2000
	sparse := testutil.File("big/sparse", "head")
	sparse.Size = 8 << 20
	odd := testutil.File("odd/na me\twith\nnewline ü", "x")
	odd.ModTime = mtime
	roDir := testutil.Dir("ro")
	roDir.Mode, roDir.ModTime = 0o555, mtime
	xattr := testutil.File("cap", "c")
	xattr.Xattrs = map[string]string{"security.capability": "\x01"}
	entries := []testutil.Entry{
		testutil.Dir("./"), roDir, testutil.File("ro/f", "in read-only dir"),
		testutil.Dir("bin"), setuid, testutil.Symlink("bin/sh", "/bin/busybox"),
		testutil.File("a", "A"), testutil.Hardlink("a-link", "a"),
		testutil.Whiteout("gone"), testutil.Opaque("opq"), testutil.Fifo("fifo"),
		sparse, odd, xattr,
		testutil.File("dup", "first"), testutil.File("dup", "second"),
	}
	if os.Geteuid() == 0 {
		entries = append(entries, testutil.CharDev("null", 1, 3))
	}
	gz, err := testutil.Layer(entries)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := testutil.Tar(entries)
	if err != nil {
		t.Fatal(err)
	}
	origin := digest.FromString("config")
	blob, _ := blobOf(gz, origin)
	repo := ducc.New(testutil.RemovableTempDir(t))

	res, err := repo.WriteLayer(ctx, blob)
	if err != nil {
		t.Fatal(err)
	}
	if res.Present || res.DiffID != digest.FromBytes(raw) || res.DiffSize != int64(len(raw)) {
		t.Errorf("result %+v, want diff id %s size %d", res, digest.FromBytes(raw), len(raw))
	}
	root, err := repo.Lookup(ctx, blob.Digest)
	if err != nil {
		t.Fatal(err)
	}
	lstat := func(rel string) *unix.Stat_t {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
			t.Fatalf("lstat %s: %v", rel, err)
		}
		return &st
	}
	read := func(rel string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	if st := lstat(ducc.CatalogMarker); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		t.Errorf("catalog marker: mode %o size %d", st.Mode, st.Size)
	}
	if st := lstat("bin/su"); st.Mode&0o7777 != 0o4755 {
		t.Errorf("setuid mode lost: %o", st.Mode)
	} else if os.Geteuid() == 0 && (st.Uid != 1000 || st.Gid != 2000) {
		t.Errorf("owner %d:%d, want 1000:2000", st.Uid, st.Gid)
	}
	if st := lstat("ro"); st.Mode&0o7777 != 0o555 || st.Mtim.Nano() != mtime.UnixNano() {
		t.Errorf("dir ro: mode %o mtime %d, want 555 %d", st.Mode, st.Mtim.Nano(), mtime.UnixNano())
	}
	if st := lstat("odd/na me\twith\nnewline ü"); st.Mtim.Nano() != mtime.UnixNano() {
		t.Errorf("odd name mtime %d, want %d", st.Mtim.Nano(), mtime.UnixNano())
	}
	if st := lstat("."); st.Mtim.Nano() != testutil.Epoch.UnixNano() {
		t.Errorf("root mtime %d, want %d (changed by the catalog marker?)", st.Mtim.Nano(), testutil.Epoch.UnixNano())
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("symlink: %q %v", l, err)
	}
	if lstat("a-link").Nlink != 1 || lstat("a").Ino == lstat("a-link").Ino || read("a-link") != "A" {
		t.Errorf("hardlink not turned into a copy")
	}
	for _, wh := range []string{".wh.gone", "opq/.wh..wh..opq"} {
		if st := lstat(wh); st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
			t.Errorf("whiteout %s not kept as an empty file: mode %o", wh, st.Mode)
		}
	}
	if st := lstat("fifo"); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %o", st.Mode)
	}
	if os.Geteuid() == 0 {
		if st := lstat("null"); st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("char device: mode %o rdev %d", st.Mode, st.Rdev)
		}
	}
	if st := lstat("big/sparse"); st.Size != 8<<20 || st.Blocks*512 > 1<<20 {
		t.Errorf("sparse file: size %d, %d bytes allocated", st.Size, st.Blocks*512)
	}
	if read("dup") != "second" {
		t.Errorf("a later entry did not replace an earlier one")
	}
	if sz, _ := unix.Lgetxattr(filepath.Join(root, "cap"), "security.capability", nil); sz > 0 {
		t.Errorf("xattr survived ingest")
	}

	infos, err := repo.Metadata(ctx, blob.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].ID != res.DiffID.Encoded() || infos[0].DiffDigest != res.DiffID.String() ||
		infos[0].CompressedDiffDigest != blob.Digest.String() || infos[0].DiffSize != int64(len(raw)) || infos[0].Created == "" {
		t.Errorf("layers.json: %+v", infos)
	}
	if got, err := repo.DiffID(ctx, blob.Digest); err != nil || got != res.DiffID {
		t.Errorf("DiffID = %s, %v; want %s", got, err, res.DiffID)
	}
	if got, err := repo.Origins(blob.Digest); err != nil || len(got) != 1 || got[0] != origin.String() {
		t.Errorf("origin.json: %v %v", got, err)
	}
}

func TestWriteLayerSkipsPresent(t *testing.T) {
	ctx := context.Background()
	repo := ducc.New(testutil.RemovableTempDir(t))
	gz := testutil.MustLayer(testutil.File("f", "x"))
	first, opened := blobOf(gz, digest.FromString("one"))
	if _, err := repo.WriteLayer(ctx, first); err != nil {
		t.Fatal(err)
	}
	second, _ := blobOf(gz, digest.FromString("two"))
	second.Open = first.Open
	res, err := repo.WriteLayer(ctx, second)
	if err != nil || !res.Present {
		t.Fatalf("second write: %+v %v", res, err)
	}
	if *opened != 1 {
		t.Errorf("blob opened %d times, want 1", *opened)
	}
	got, err := repo.Origins(first.Digest)
	if err != nil || len(got) != 2 {
		t.Errorf("origins %v %v, want both images", got, err)
	}
	var raw []string
	b, _ := os.ReadFile(filepath.Join(mustDir(t, repo, first.Digest), ".metadata", "origin.json"))
	if err := json.Unmarshal(b, &raw); err != nil || raw[0] > raw[1] {
		t.Errorf("origin.json not a sorted list: %s", b)
	}
}

func TestWriteLayerRejects(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		entries   []testutil.Entry
		mediaType string
		corrupt   bool
		want      error
	}{
		{name: "dotdot", entries: []testutil.Entry{testutil.File("../evil", "x")}},
		{name: "inner dotdot", entries: []testutil.Entry{testutil.File("a/../../evil", "x")}},
		{name: "through symlink", entries: []testutil.Entry{testutil.Symlink("l", "/tmp"), testutil.File("l/evil", "x")}},
		{name: "through file", entries: []testutil.Entry{testutil.File("f", "x"), testutil.File("f/evil", "x")}},
		{name: "hardlink outside", entries: []testutil.Entry{testutil.Hardlink("h", "../../etc/passwd")}},
		{name: "hardlink to symlink", entries: []testutil.Entry{testutil.Symlink("l", "/etc/passwd"), testutil.Hardlink("h", "l")}},
		{name: "hardlink to fifo", entries: []testutil.Entry{testutil.Fifo("p"), testutil.Hardlink("h", "p")}},
		{name: "zstd", entries: []testutil.Entry{testutil.File("f", "x")}, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", want: ducc.ErrUnsupportedLayer},
		{name: "foreign", entries: []testutil.Entry{testutil.File("f", "x")}, mediaType: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", want: ducc.ErrUnsupportedLayer},
		{name: "digest mismatch", entries: []testutil.Entry{testutil.File("f", "x")}, corrupt: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := testutil.RemovableTempDir(t)
			repo := ducc.New(dir)
			blob, opened := blobOf(testutil.MustLayer(tc.entries...), "")
			if tc.mediaType != "" {
				blob.MediaType = tc.mediaType
			}
			if tc.corrupt {
				blob.Digest = digest.FromString("something else")
			}
			_, err := repo.WriteLayer(ctx, blob)
			if err == nil {
				t.Fatal("write succeeded")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if tc.want != nil && *opened != 0 {
				t.Errorf("an unsupported blob was fetched")
			}
			if _, err := repo.Lookup(ctx, blob.Digest); err == nil {
				t.Errorf("a layer was left behind")
			}
			filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if d != nil && strings.HasPrefix(d.Name(), ".tmp-") {
					t.Errorf("temporary dir left behind: %s", p)
				}
				return nil
			})
			if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
				t.Errorf("an entry escaped the root")
			}
		})
	}
}

func mustDir(t *testing.T, repo *ducc.Repo, d digest.Digest) string {
	t.Helper()
	dir, err := repo.LayerDir(d)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestIngestible(t *testing.T) {
	for mt, ok := range map[string]bool{
		"application/vnd.oci.image.layer.v1.tar+gzip":                  true,
		"application/vnd.docker.image.rootfs.diff.tar.gzip":            true,
		"application/vnd.oci.image.layer.v1.tar":                       false,
		"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": false,
		"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":    false,
		"application/vnd.oci.image.layer.v1.tar+zstd":                  false,
		"": false,
	} {
		if err := ducc.Ingestible(mt); (err == nil) != ok {
			t.Errorf("Ingestible(%q) = %v", mt, err)
		}
	}
}

// An archive entry named .cvmfscatalog (a symlink out of the root, a
// fifo) is replaced by the zero-byte marker, never written through.
func TestWriteLayerReplacesCatalogMarkerEntry(t *testing.T) {
	ctx := context.Background()
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, entry := range map[string]testutil.Entry{
		"symlink": testutil.Symlink(ducc.CatalogMarker, outside),
		"fifo":    testutil.Fifo(ducc.CatalogMarker),
		"file":    testutil.File(ducc.CatalogMarker, "content"),
	} {
		t.Run(name, func(t *testing.T) {
			repo := ducc.New(testutil.RemovableTempDir(t))
			blob, _ := blobOf(testutil.MustLayer(entry), "")
			if _, err := repo.WriteLayer(ctx, blob); err != nil {
				t.Fatal(err)
			}
			root, _ := repo.Lookup(ctx, blob.Digest)
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, ducc.CatalogMarker), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
				t.Errorf("marker: mode %o size %d err %v", st.Mode, st.Size, err)
			}
			if b, _ := os.ReadFile(outside); string(b) != "keep" {
				t.Errorf("wrote through the archive's entry to %s: %q", outside, b)
			}
		})
	}
}
