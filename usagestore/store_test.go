package usagestore

import (
	"context"
	"fmt"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

var (
	layerA = digest.Digest("sha256:" + strings.Repeat("a", 64))
	layerB = digest.Digest("sha256:" + strings.Repeat("b", 64))
)

// open opens a store in dir that writes only when told (no flush
// interval), closed at the test's end.
func open(t *testing.T, dir string, opts ...Opt) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, append([]Opt{WithFlushInterval(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestHostileRecords: records that are corrupt, huge, symlinks, of another
// layer or of another version are ignored; the layer starts afresh.
func TestHostileRecords(t *testing.T) {
	other := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(other, []byte(`{"Version":1,"Layer":"`+layerA.String()+`","Base":{"Opens":99}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		write func(path string) error
	}{
		{"corrupt", func(p string) error { return os.WriteFile(p, []byte("{not json"), 0o600) }},
		{"huge", func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return f.Truncate(maxRecordSize + 1)
		}},
		{"symlink", func(p string) error { return os.Symlink(other, p) }},
		{"another layer", func(p string) error {
			return os.WriteFile(p, []byte(`{"Version":1,"Layer":"`+layerB.String()+`","Base":{"Opens":99}}`), 0o600)
		}},
		{"another version", func(p string) error {
			return os.WriteFile(p, []byte(`{"Version":7,"Layer":"`+layerA.String()+`","Base":{"Opens":99}}`), 0o600)
		}},
		{"negative figures", func(p string) error {
			return os.WriteFile(p, []byte(`{"Version":1,"Layer":"`+layerA.String()+`","Base":{"Opens":-99,"Bytes":-5,"Profile":[{"Path":"../../etc/shadow","Opens":-1,"Bytes":-1}]}}`), 0o600)
		}},
		{"a directory", func(p string) error { return os.Mkdir(p, 0o700) }},
		{"a FIFO", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, profilesDir), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := tc.write(filepath.Join(dir, profilesDir, layerA.Encoded()+".json")); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{imagesFile, contentsFile} {
				if err := tc.write(filepath.Join(dir, name)); err != nil {
					t.Fatal(err)
				}
			}
			src := newFakeSource()
			s := open(t, dir, WithSource(src))
			src.session(layerA, time.Unix(10, 0), fa("f", 1, 10))
			u, _, err := s.Layer(context.Background(), layerA)
			if err != nil {
				t.Fatal(err)
			}
			if u.Opens != 1 || u.Bytes != 10 || len(s.Images()) != 0 || len(u.Profile) != 1 || u.Profile[0].Path != "f" {
				t.Errorf("usage %+v, images %v: a hostile record was taken in", u, s.Images())
			}
		})
	}
}

// TestOpenRemovesTemporaryFiles: the temporary files of record writes a
// crash interrupted are removed at Open; nothing else is.
func TestOpenRemovesTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, profilesDir)
	if err := os.MkdirAll(prof, 0o700); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(dir, ".tmp-"+imagesFile+"-123456"),
		filepath.Join(prof, ".tmp-"+layerA.Encoded()+".json-987654"),
	}
	kept := []string{
		filepath.Join(dir, "notes.txt"),
		filepath.Join(prof, layerB.Encoded()+".json"),
	}
	for _, p := range append(slices.Clone(leftovers), kept...) {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory of that name is not a file a write left.
	keptDir := filepath.Join(prof, ".tmp-x.json-1")
	if err := os.Mkdir(keptDir, 0o700); err != nil {
		t.Fatal(err)
	}
	open(t, dir)
	for _, p := range leftovers {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	for _, p := range append(kept, keptDir) {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
}

// withRecordLimit sets the largest record file (maxRecordSize otherwise).
func withRecordLimit(n int64) Opt {
	return func(c *config) error { c.recordLimit = n; return nil }
}

// TestRecordsFitWhatIsRead: a layer profile or an image list too large for
// a record file is written cut to fit (the profile marked truncated, the
// least recently seen images dropped), never written whole and then
// refused at the next start.
func TestRecordsFitWhatIsRead(t *testing.T) {
	ctx := context.Background()
	const limit = 8 << 10
	src := newFakeSource()
	var files []usage.FileAccess
	for i := range 400 {
		files = append(files, fa(fmt.Sprintf("usr/lib/%s-%03d.so", strings.Repeat("x", 40), i), 1, int64(1000-i)))
	}
	src.session(layerA, time.Unix(10, 0), files...)
	dir := t.TempDir()
	s := open(t, dir, WithSource(src), withRecordLimit(limit))
	for i := range 100 {
		s.Record(ctx, snapshot.LayerEvent{Image: fmt.Sprintf("registry.example/%s:%03d", strings.Repeat("y", 60), i), Layer: layerA, Served: true})
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	src.unmount(layerA)

	s = open(t, dir, WithSource(src), withRecordLimit(limit))
	u, ok, err := s.Layer(ctx, layerA)
	if err != nil || !ok {
		t.Fatalf("layer record after a restart: %v, %v", ok, err)
	}
	if u.Opens != 400 || !u.Truncated || u.Files == 0 || u.Files >= 400 {
		t.Errorf("layer record: %d opens, %d files, truncated %v; want 400 opens and a truncated profile", u.Opens, u.Files, u.Truncated)
	}
	if u.Files > 0 && u.Profile[0].Bytes != 1000 {
		t.Errorf("profile kept %+v first, want the most read file", u.Profile[0])
	}
	imgs := s.Images()
	if len(imgs) == 0 || len(imgs) >= 100 {
		t.Fatalf("%d images after a restart, want some but not all 100", len(imgs))
	}
	if last := fmt.Sprintf("registry.example/%s:%03d", strings.Repeat("y", 60), 99); imgs[len(imgs)-1].Image != last {
		t.Errorf("images kept end with %q, want the most recently seen %q", imgs[len(imgs)-1].Image, last)
	}
}
