package usagestore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

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
		s.Record(ctx, Event{Image: fmt.Sprintf("registry.example/%s:%03d", strings.Repeat("y", 60), i), Layer: layerA, Served: true})
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
