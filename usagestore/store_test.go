package usagestore

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

var (
	layerA = digest.Digest("sha256:" + strings.Repeat("a", 64))
	layerB = digest.Digest("sha256:" + strings.Repeat("b", 64))
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

func open(t *testing.T, dir string, opts ...Opt) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, append([]Opt{WithFlushInterval(0)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
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
	s.mu.Lock() // the "killed" store writes nothing more
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

// TestLayerNames: only sha256 digests name record files.
func TestLayerNames(t *testing.T) {
	s := open(t, t.TempDir(), WithSource(newFakeSource()))
	for _, d := range []digest.Digest{"", "sha256:../../x", "sha512:" + digest.Digest(strings.Repeat("a", 128)), "sha256:" + digest.Digest(strings.Repeat("A", 64))} {
		if _, _, err := s.Layer(context.Background(), d); err == nil {
			t.Errorf("Layer(%q) accepted", d)
		}
	}
}

// TestImagesAndMissing: image records keep each layer's last unpack; the
// images not fully served come most pulled first, and persist.
func TestImagesAndMissing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	s.Record(ctx, Event{Image: "served:1", Layer: layerA, Served: true})
	s.Record(ctx, Event{Image: "half:1", Layer: layerA, Served: true})
	s.Record(ctx, Event{Image: "half:1", Layer: layerB, Reason: "not-in-repository"})
	for range 2 {
		s.Record(ctx, Event{Image: "zstd:1", Layer: layerB, Reason: "zstd"})
		s.Record(ctx, Event{Image: "zstd:1", RawLayer: "sha256:nope", Reason: "malformed-label"})
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, dir)
	missing := s2.Missing()
	var names []string
	for _, m := range missing {
		names = append(names, m.Image)
	}
	if !slices.Equal(names, []string{"zstd:1", "half:1"}) {
		t.Fatalf("missing %v, want [zstd:1 half:1]", names)
	}
	z := missing[0]
	if z.Pulls != 4 || len(z.Layers) != 2 || z.Layers[0].Reason != "zstd" || z.Layers[0].Pulls != 2 || z.Layers[1].RawLayer != "sha256:nope" {
		t.Errorf("zstd image record %+v", z)
	}
	// Served later: no longer missing.
	s2.Record(ctx, Event{Image: "half:1", Layer: layerB, Served: true})
	if m := s2.Missing(); len(m) != 1 || m[0].Image != "zstd:1" {
		t.Errorf("missing after the layer was served: %+v", m)
	}
}

// TestReportAndHandler: a report over the handler gives each layer's read
// and total files and bytes; the contents are counted once.
func TestReportAndHandler(t *testing.T) {
	ctx := context.Background()
	src := newFakeSource()
	var counted int
	s := open(t, t.TempDir(), WithSource(src), WithContents(func(ctx context.Context, layer digest.Digest) (usage.Contents, error) {
		counted++
		return usage.Contents{Files: 10, Bytes: 1000}, nil
	}))
	s.Record(ctx, Event{Image: "app:1", Layer: layerA, Served: true})
	s.Record(ctx, Event{Image: "app:1", Layer: layerB, Reason: "not-in-repository"})
	src.session(layerA, time.Unix(10, 0), fa("x", 1, 100), fa("y", 1, 150))
	srv := httptest.NewServer(handler(s))
	defer srv.Close()
	var rows []usage.ReportRow
	for rows == nil || rows[0].Counting {
		rows = nil
		getJSON(t, srv.URL+"/usage/report?image=app:1", &rows)
	}
	getJSON(t, srv.URL+"/usage/report?image=app:1", &rows)
	want := []usage.ReportRow{
		{Image: "app:1", Layer: layerA, Served: true, Accounting: "reads", FilesRead: 2, BytesRead: 250, FilesTotal: 10, BytesTotal: 1000},
		{Image: "app:1", Layer: layerB, Reason: "not-in-repository"},
	}
	if !slices.Equal(rows, want) || counted != 1 {
		t.Errorf("report %+v (contents counted %d times), want %+v once", rows, counted, want)
	}
	var prof []usage.LayerUsage
	getJSON(t, srv.URL+"/usage/profile?image=app:1", &prof)
	if len(prof) != 1 || prof[0].Layer != layerA || len(prof[0].Profile) != 2 {
		t.Errorf("image profile %+v", prof)
	}
	for path, code := range map[string]int{
		"/usage/report?image=nope":               http.StatusNotFound,
		"/usage/report":                          http.StatusBadRequest,
		"/usage/profile?layer=sha256:../etc":     http.StatusBadRequest,
		"/usage/profile?layer=" + string(layerB): http.StatusNotFound,
		"/usage/profile":                         http.StatusBadRequest,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, code)
		}
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
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

// TestLongLabelsStayValid: a reference longer than kept, with a multi-byte
// rune across the cut (or invalid UTF-8), is kept as valid UTF-8 (it names
// metrics series).
func TestLongLabelsStayValid(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	long := strings.Repeat("a", maxRefLen-1) + "é" + "tail"
	s.Record(ctx, Event{Image: long, Layer: layerA, Served: true})
	s.Record(ctx, Event{Image: "bad\xffref", Layer: layerB, Served: true})
	for _, l := range []digest.Digest{layerA, layerB} {
		if got := s.ImageOf(l); !utf8.ValidString(got) || len(got) > maxRefLen || got == "" {
			t.Errorf("ImageOf(%s) = %q (%d bytes): want valid UTF-8 of at most %d bytes", l, got, len(got), maxRefLen)
		}
	}
}

// TestContentsCountedInBackground: a report does not wait for a layer's
// count (it says the layer is being counted); the count outlives the
// request, the next report has it, and Close stops a count in flight.
func TestContentsCountedInBackground(t *testing.T) {
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan digest.Digest, 2)
	stopped := make(chan error, 1)
	s := open(t, t.TempDir(), WithContents(func(ctx context.Context, layer digest.Digest) (usage.Contents, error) {
		started <- layer
		if layer == layerB {
			<-ctx.Done()
			stopped <- ctx.Err()
			return usage.Contents{}, ctx.Err()
		}
		select {
		case <-release:
		case <-ctx.Done():
			return usage.Contents{}, ctx.Err()
		}
		return usage.Contents{Files: 10, Bytes: 1000}, nil
	}))
	s.Record(ctx, Event{Image: "app:1", Layer: layerA, Served: true})
	srv := httptest.NewServer(handler(s))
	defer srv.Close()
	var rows []usage.ReportRow
	getJSON(t, srv.URL+"/usage/report?image=app:1", &rows)
	if len(rows) != 1 || !rows[0].Counting || rows[0].FilesTotal != 0 {
		t.Fatalf("first report %+v: want layer A being counted", rows)
	}
	<-started
	getJSON(t, srv.URL+"/usage/report?image=app:1", &rows) // no second count
	close(release)
	for {
		rows = nil
		getJSON(t, srv.URL+"/usage/report?image=app:1", &rows)
		if !rows[0].Counting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if rows[0].FilesTotal != 10 || rows[0].BytesTotal != 1000 || rows[0].ContentsError != "" {
		t.Errorf("report after the count %+v", rows)
	}
	if len(started) != 0 {
		t.Errorf("layer A counted again: %v", <-started)
	}

	s.Record(ctx, Event{Image: "big:1", Layer: layerB, Served: true})
	getJSON(t, srv.URL+"/usage/report?image=big:1", &rows)
	<-started
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stopped:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("count in flight ended with %v, want canceled", err)
		}
	default:
		t.Error("Close returned with a count still in flight")
	}
}

// TestForgedImageDigest: an image record naming an invalid layer digest
// keeps it only as a raw label; reports still answer.
func TestForgedImageDigest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	rec := `{"Version":1,"Images":[{"Image":"app:1","Layers":[{"Layer":"sha256:../../etc","Served":true},{"Layer":"` + layerA.String() + `","Served":true}]}]}`
	if err := os.WriteFile(filepath.Join(dir, imagesFile), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, dir, WithContents(func(context.Context, digest.Digest) (usage.Contents, error) {
		return usage.Contents{Files: 1, Bytes: 1}, nil
	}))
	rows, err := s.Report(ctx, []string{"app:1"})
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if len(rows) != 2 || rows[0].Layer != "" || rows[1].Layer != layerA {
		t.Errorf("report %+v: want the forged digest dropped, layer A kept", rows)
	}
	if img, _ := s.Image("app:1"); img.Layers[0].RawLayer != "sha256:../../etc" {
		t.Errorf("image record %+v: want the forged digest kept as a raw label", img)
	}
}

// TestCountsBounded: a report of an image of many layers counts at most
// maxCounts layers at once, counts every layer in the end, and Close ends
// the counts still waiting for a turn.
func TestCountsBounded(t *testing.T) {
	ctx := context.Background()
	const layers = 3 * maxCounts
	var (
		mu            sync.Mutex
		running, peak int
		counted       int
		release       = make(chan struct{})
		entered       = make(chan struct{}, layers)
	)
	contents := func(ctx context.Context, layer digest.Digest) (usage.Contents, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		defer func() {
			mu.Lock()
			running--
			mu.Unlock()
		}()
		select {
		case entered <- struct{}{}:
		case <-ctx.Done():
			return usage.Contents{}, ctx.Err()
		}
		select {
		case <-release:
		case <-ctx.Done():
			return usage.Contents{}, ctx.Err()
		}
		mu.Lock()
		counted++
		mu.Unlock()
		return usage.Contents{Files: 1, Bytes: 1}, nil
	}
	// startCounts opens a store, records an image of layers layers and
	// asks for its report, which starts the counts, and returns once
	// maxCounts of them run.
	startCounts := func(name string) *Store {
		s := open(t, t.TempDir(), WithContents(contents))
		for i := range layers {
			s.Record(ctx, Event{Image: name, Layer: digest.FromString(name + strconv.Itoa(i)), Served: true})
		}
		if _, err := s.Report(ctx, []string{name}); err != nil {
			t.Fatal(err)
		}
		for range maxCounts {
			<-entered
		}
		return s
	}

	s := startCounts("big:1")
	// The others have every chance to start now; none may.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	if peak != maxCounts {
		t.Errorf("%d layer counts ran at once, want %d", peak, maxCounts)
	}
	mu.Unlock()
	close(release)
	for {
		rows, err := s.Report(ctx, []string{"big:1"})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(rows, func(r usage.ReportRow) bool { return r.Counting }) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	if counted != layers || peak != maxCounts {
		t.Errorf("%d of %d layers counted, at most %d at once; want all, at most %d", counted, layers, peak, maxCounts)
	}
	mu.Unlock()

	// Close with two counts running and the rest waiting for a turn.
	release, entered = make(chan struct{}), make(chan struct{}, layers)
	s2 := startCounts("big:2")
	closed := make(chan error, 1)
	go func() { closed <- s2.Close(ctx) }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end the layer counts running and waiting")
	}
}
