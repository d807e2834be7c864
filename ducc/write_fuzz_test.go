//go:build linux

package ducc_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// FuzzWriteLayer feeds arbitrary tar streams to WriteLayer: it must not
// panic, must write nothing outside the repository, and must leave either a
// complete layer or nothing at all.
func FuzzWriteLayer(f *testing.F) {
	for _, es := range [][]testutil.Entry{
		{testutil.Dir("a"), testutil.File("a/f", "x"), testutil.Symlink("a/l", "../../etc"), testutil.Hardlink("a/h", "a/f")},
		{testutil.File("../escape", "x")},
		{testutil.Symlink("l", "/tmp"), testutil.File("l/escape", "x")},
		{testutil.Whiteout("a/b"), testutil.Opaque("c"), testutil.Fifo("p"), testutil.File("f", "1"), testutil.File("f", "2")},
	} {
		b, err := testutil.Tar(es)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, tarball []byte) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(tarball)
		zw.Close()
		blob := gz.Bytes()

		dir := testutil.RemovableTempDir(t)
		root := filepath.Join(dir, "repo")
		repo := ducc.New(root)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		d := digest.FromBytes(blob)
		_, err := repo.WriteLayer(ctx, ducc.LayerBlob{
			Digest:    d,
			MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
			Open: func(context.Context) (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(blob)), nil
			},
		})
		if entries, rerr := os.ReadDir(dir); rerr != nil || len(entries) != 1 || entries[0].Name() != "repo" {
			t.Fatalf("something was written beside the repository: %v %v", entries, rerr)
		}
		layerDir, lerr := repo.LayerDir(d)
		if lerr != nil {
			t.Fatal(lerr)
		}
		siblings, _ := os.ReadDir(filepath.Dir(layerDir))
		if err != nil {
			if len(siblings) != 0 {
				t.Fatalf("failed write (%v) left %v behind", err, siblings)
			}
			return
		}
		if _, err := repo.Lookup(ctx, d); err != nil {
			t.Fatalf("write succeeded but the layer is missing: %v", err)
		}
		if _, err := repo.Metadata(ctx, d); err != nil {
			t.Fatalf("write succeeded but layers.json is unreadable: %v", err)
		}
	})
}
