package usagestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// fakeSource is a FUSE manager's live figures, set by the test.
type fakeSource struct {
	mu    sync.Mutex
	stats map[digest.Digest]usage.LayerStats
	prof  map[digest.Digest][]usage.FileAccess
	// down makes Stats fail, noProfile Profile (a server out of reach).
	down, noProfile bool
	// asked counts the calls of Stats.
	asked int
}

func newFakeSource() *fakeSource {
	return &fakeSource{stats: map[digest.Digest]usage.LayerStats{}, prof: map[digest.Digest][]usage.FileAccess{}}
}

// session starts (or replaces) a live session of layer that first read at
// start, with the files read.
func (f *fakeSource) session(layer digest.Digest, start time.Time, files ...usage.FileAccess) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := usage.LayerStats{Layer: layer, Mounts: 1, Accounting: usage.AccountReads, FirstAccess: start, LastAccess: start.Add(time.Second)}
	for _, fa := range files {
		st.Opens += fa.Opens
		st.BytesRead += fa.Bytes
		st.UniqueFiles++
	}
	f.stats[layer] = st
	f.prof[layer] = files
}

func (f *fakeSource) unmount(layer digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.stats, layer)
	delete(f.prof, layer)
}

func (f *fakeSource) Stats() ([]usage.LayerStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	if f.down {
		return nil, errors.New("source down")
	}
	var out []usage.LayerStats
	for _, st := range f.stats {
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeSource) Profile(layer digest.Digest) ([]usage.FileAccess, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noProfile {
		return nil, errors.New("no profile")
	}
	return slices.Clone(f.prof[layer]), nil
}

func layerUsage(t *testing.T, s *Store, layer digest.Digest) usage.LayerUsage {
	t.Helper()
	u, ok, err := s.Layer(context.Background(), layer)
	if err != nil || !ok {
		t.Fatalf("Layer(%s) = %v, %v", layer, ok, err)
	}
	return u
}

func fa(path string, opens, bytes int64) usage.FileAccess {
	return usage.FileAccess{Path: path, Opens: opens, Bytes: bytes}
}

func wantProfile(t *testing.T, u usage.LayerUsage, opens, bytes int64, want ...usage.FileAccess) {
	t.Helper()
	if u.Opens != opens || u.Bytes != bytes || u.Files != int64(len(want)) || !slices.Equal(u.Profile, want) {
		t.Errorf("usage opens %d bytes %d files %d profile %v; want %d %d %d %v", u.Opens, u.Bytes, u.Files, u.Profile, opens, bytes, len(want), want)
	}
}

// TestSessionsAddUp: the sessions of a layer, each ended by its last
// unmount, add up in its record across daemon restarts.
func TestSessionsAddUp(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := newFakeSource()
	s := open(t, dir, WithSource(src))
	t0 := time.Unix(1000, 0)
	src.session(layerA, t0, fa("bin/sh", 1, 100), fa("lib/libc.so", 2, 50))
	if err := s.Unmounting(ctx, func() error { src.unmount(layerA); return nil }); err != nil {
		t.Fatal(err)
	}
	wantProfile(t, layerUsage(t, s, layerA), 3, 150, fa("bin/sh", 1, 100), fa("lib/libc.so", 2, 50))
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	src2 := newFakeSource()
	s2 := open(t, dir, WithSource(src2))
	src2.session(layerA, t0.Add(time.Hour), fa("bin/sh", 1, 100), fa("etc/passwd", 1, 10))
	u := layerUsage(t, s2, layerA)
	wantProfile(t, u, 5, 260, fa("bin/sh", 2, 200), fa("lib/libc.so", 2, 50), fa("etc/passwd", 1, 10))
	if !u.Mounted || !u.FirstAccess.Equal(t0) || !u.LastAccess.Equal(t0.Add(time.Hour+time.Second)) {
		t.Errorf("mounted %v first %v last %v", u.Mounted, u.FirstAccess, u.LastAccess)
	}
}

// TestSameSessionAcrossRestart: a separate FUSE server keeps its session
// while the daemon restarts; the restarted daemon does not count it twice.
func TestSameSessionAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := newFakeSource()
	t0 := time.Unix(2000, 0)
	src.session(layerA, t0, fa("f", 1, 10))
	s := open(t, dir, WithSource(src))
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	src.session(layerA, t0, fa("f", 2, 20)) // read on meanwhile
	s2 := open(t, dir, WithSource(src))
	wantProfile(t, layerUsage(t, s2, layerA), 2, 20, fa("f", 2, 20))
	if err := s2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	wantProfile(t, layerUsage(t, s2, layerA), 2, 20, fa("f", 2, 20))
}

func (f *fakeSource) setDown(down, noProfile bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down, f.noProfile = down, noProfile
}

// TestSourceOutage: a flush while the source cannot be reached, or cannot
// give a profile, neither ends the live session nor loses its files.
func TestSourceOutage(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource()
	s := open(t, t.TempDir(), WithSource(src))
	t0 := time.Unix(5000, 0)
	src.session(layerA, t0, fa("f", 1, 10))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	src.setDown(true, false)
	s.Flush(ctx)
	src.setDown(false, false)
	wantProfile(t, layerUsage(t, s, layerA), 1, 10, fa("f", 1, 10))

	src.session(layerA, t0, fa("f", 2, 20))
	src.setDown(false, true)
	s.Flush(ctx)
	if err := s.Unmounting(ctx, func() error { src.unmount(layerA); return nil }); err != nil {
		t.Fatal(err)
	}
	src.setDown(false, false)
	s.Flush(ctx)
	wantProfile(t, layerUsage(t, s, layerA), 1, 10, fa("f", 1, 10))
}

// TestCrashKeepsLastFlush: a daemon killed with its mounts (no Close, no
// unmount) keeps what its last flush wrote; the next session adds to it.
func TestCrashKeepsLastFlush(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := newFakeSource()
	s, err := Open(ctx, dir, WithSource(src), WithFlushInterval(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	src.session(layerA, time.Unix(3000, 0), fa("f", 1, 10))
	// Wait for a periodic flush to write the session (no Flush call).
	for !strings.Contains(readFile(t, filepath.Join(dir, profilesDir, layerA.Encoded()+".json")), `"Path":"f"`) {
		time.Sleep(time.Millisecond)
	}
	s.profiles.mu.Lock() // the "killed" store writes nothing more
	src2 := newFakeSource()
	s2 := open(t, dir, WithSource(src2))
	src2.session(layerA, time.Unix(4000, 0), fa("f", 1, 10), fa("g", 1, 5))
	wantProfile(t, layerUsage(t, s2, layerA), 3, 25, fa("f", 2, 20), fa("g", 1, 5))
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestRemountBetweenFlushes: a layer unmounted and mounted again between
// two flushes (no Unmounting) keeps the old session's last figures.
func TestRemountBetweenFlushes(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource()
	s := open(t, t.TempDir(), WithSource(src))
	src.session(layerA, time.Unix(10, 0), fa("f", 1, 10))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	src.session(layerA, time.Unix(20, 0), fa("g", 1, 1))
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	wantProfile(t, layerUsage(t, s, layerA), 2, 11, fa("f", 1, 10), fa("g", 1, 1))
}

// TestProfileLimitBoundsMerge: the merged profile keeps at most the limit.
func TestProfileLimitBoundsMerge(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := newFakeSource()
	s := open(t, dir, WithSource(src), WithProfileLimit(2))
	src.session(layerA, time.Unix(10, 0), fa("a", 1, 3), fa("b", 1, 2))
	s.Unmounting(ctx, func() error { src.unmount(layerA); return nil })
	src.session(layerA, time.Unix(20, 0), fa("c", 1, 1), fa("a", 1, 3))
	u := layerUsage(t, s, layerA)
	wantProfile(t, u, 4, 9, fa("a", 2, 6), fa("b", 1, 2))
	if !u.Truncated {
		t.Error("a merged profile past the limit is not marked truncated")
	}
}

// TestLayerNames: only sha256 digests name record files.
func TestLayerNames(t *testing.T) {
	s := open(t, t.TempDir(), WithSource(newFakeSource()))
	for _, d := range []digest.Digest{"", "sha256:../../x", "sha512:" + digest.Digest(strings.Repeat("a", 128)), "sha256:" + digest.Digest(strings.Repeat("A", 64))} {
		if _, _, err := s.Layer(context.Background(), d); err == nil {
			t.Errorf("Layer(%q) accepted", d)
		}
	}
}

// TestParallelUnmounts: layers unmounted at once are each folded whole.
func TestParallelUnmounts(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource()
	s := open(t, t.TempDir(), WithSource(src))
	src.session(layerA, time.Unix(10, 0), fa("a", 1, 1))
	src.session(layerB, time.Unix(10, 0), fa("b", 2, 2))
	var wg sync.WaitGroup
	for _, l := range []digest.Digest{layerA, layerB} {
		wg.Go(func() {
			if err := s.Unmounting(ctx, func() error { src.unmount(l); return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	wantProfile(t, layerUsage(t, s, layerA), 1, 1, fa("a", 1, 1))
	wantProfile(t, layerUsage(t, s, layerB), 2, 2, fa("b", 2, 2))
	if u := layerUsage(t, s, layerA); u.Mounted {
		t.Error("an unmounted layer is reported mounted")
	}
}
