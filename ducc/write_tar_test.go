//go:build linux

package ducc_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// gzipTar returns a gzip layer of the headers (regular files get body as
// content), written with archive/tar as is: unlike testutil.Layer it can
// write any header, global PAX headers included.
func gzipTar(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		body := []byte(h.Linkname)
		if h.Typeflag == tar.TypeReg {
			h.Size, h.Linkname = int64(len(body)), ""
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A PAX global header is archive metadata, not a file: one named like a
// directory written earlier must leave that directory alone.
func TestWriteLayerIgnoresGlobalHeader(t *testing.T) {
	ctx := context.Background()
	for _, name := range []string{"d", "d/", "d/f", "."} {
		t.Run(name, func(t *testing.T) {
			gz := gzipTar(t,
				&tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
				// Body in Linkname, see gzipTar.
				&tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "kept"},
				&tar.Header{Name: name, Typeflag: tar.TypeXGlobalHeader, PAXRecords: map[string]string{"comment": "global"}},
				&tar.Header{Name: "after", Typeflag: tar.TypeReg, Mode: 0o644, Linkname: "later"},
			)
			repo := ducc.New(testutil.RemovableTempDir(t))
			blob, _ := blobOf(gz, "")
			res, err := repo.WriteLayer(ctx, blob)
			if err != nil {
				t.Fatal(err)
			}
			if res.Entries != 3 {
				t.Errorf("%d entries written, want 3 (the global header is not one)", res.Entries)
			}
			root, err := repo.Lookup(ctx, blob.Digest)
			if err != nil {
				t.Fatal(err)
			}
			for rel, want := range map[string]string{"d/f": "kept", "after": "later"} {
				if b, err := os.ReadFile(filepath.Join(root, rel)); err != nil || string(b) != want {
					t.Errorf("%s: %q %v, want %q", rel, b, err, want)
				}
			}
		})
	}
}

// Every archive entry lands beneath the layer root: names are cleaned and
// stripped of leading slashes, nothing is written through a symlink of the
// archive (a later entry of the same name replaces it), and hardlinks only
// copy regular files of the same layer.
func TestWriteLayerStaysBeneathRoot(t *testing.T) {
	ctx := context.Background()
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		entries []testutil.Entry
		// fails: the write must fail; otherwise want maps paths inside
		// the layer to their content ("" for a directory).
		fails bool
		want  map[string]string
	}{
		{name: "absolute name", entries: []testutil.Entry{testutil.File(filepath.Join(outside, "abs"), "x")},
			want: map[string]string{filepath.Join(outside[1:], "abs"): "x"}},
		{name: "absolute dotdot", entries: []testutil.Entry{testutil.File("/../../abs", "x")}, fails: true},
		{name: "dot dotdot", entries: []testutil.Entry{testutil.File("./../evil", "x")}, fails: true},
		{name: "dotdot inside", entries: []testutil.Entry{testutil.Dir("a"), testutil.File("a/../b", "x")}, want: map[string]string{"b": "x"}},
		{name: "file replaces symlink", entries: []testutil.Entry{testutil.Symlink("x", victim), testutil.File("x", "new")},
			want: map[string]string{"x": "new"}},
		{name: "dir replaces symlink", entries: []testutil.Entry{testutil.Symlink("d", outside), testutil.Dir("d"), testutil.File("d/victim", "new")},
			want: map[string]string{"d": "", "d/victim": "new"}},
		{name: "through relative symlink", entries: []testutil.Entry{testutil.Symlink("l", "../../../.."), testutil.File("l/evil", "x")}, fails: true},
		{name: "through symlink to dot", entries: []testutil.Entry{testutil.Symlink("l", "."), testutil.File("l/f", "x")}, fails: true},
		{name: "through nested symlink", entries: []testutil.Entry{testutil.Dir("a"), testutil.Symlink("a/l", outside), testutil.File("a/l/victim", "x")}, fails: true},
		{name: "dir through symlink", entries: []testutil.Entry{testutil.Symlink("l", outside), testutil.Dir("l/sub")}, fails: true},
		{name: "fifo through symlink", entries: []testutil.Entry{testutil.Symlink("l", outside), testutil.Fifo("l/p")}, fails: true},
		{name: "symlink through symlink", entries: []testutil.Entry{testutil.Symlink("l", outside), testutil.Symlink("l/s", "/")}, fails: true},
		{name: "hardlink absolute", entries: []testutil.Entry{testutil.Hardlink("h", victim)}, fails: true},
		{name: "hardlink through symlink", entries: []testutil.Entry{testutil.Symlink("l", outside), testutil.Hardlink("h", "l/victim")}, fails: true},
		{name: "hardlink through dotdot", entries: []testutil.Entry{testutil.File("f", "x"), testutil.Hardlink("h", "a/../../f")}, fails: true},
		{name: "hardlink to dir", entries: []testutil.Entry{testutil.Dir("d"), testutil.Hardlink("h", "d")}, fails: true},
		{name: "hardlink inside", entries: []testutil.Entry{testutil.File("f", "x"), testutil.Hardlink("h", "/./f")}, want: map[string]string{"h": "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := ducc.New(testutil.RemovableTempDir(t))
			blob, _ := blobOf(testutil.MustLayer(tc.entries...), "")
			_, err := repo.WriteLayer(ctx, blob)
			if tc.fails != (err != nil) {
				t.Fatalf("write error %v, want failure %v", err, tc.fails)
			}
			if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
				t.Errorf("victim outside the layer changed: %q %v", b, err)
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 1 {
				t.Errorf("something was written beside the victim: %v", ents)
			}
			if tc.fails {
				return
			}
			root, err := repo.Lookup(ctx, blob.Digest)
			if err != nil {
				t.Fatal(err)
			}
			for rel, want := range tc.want {
				p := filepath.Join(root, rel)
				fi, err := os.Lstat(p)
				switch {
				case err != nil:
					t.Errorf("%s: %v", rel, err)
				case want == "":
					if !fi.IsDir() {
						t.Errorf("%s: mode %v, want a directory", rel, fi.Mode())
					}
				case !fi.Mode().IsRegular():
					t.Errorf("%s: mode %v, want a regular file", rel, fi.Mode())
				default:
					if b, _ := os.ReadFile(p); string(b) != want {
						t.Errorf("%s: %q, want %q", rel, b, want)
					}
				}
			}
		})
	}
}
