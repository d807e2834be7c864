package usagestore

import (
	"context"
	"errors"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

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
	s.Record(ctx, snapshot.LayerEvent{Image: "app:1", Layer: layerA, Served: true})
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

	s.Record(ctx, snapshot.LayerEvent{Image: "big:1", Layer: layerB, Served: true})
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
			s.Record(ctx, snapshot.LayerEvent{Image: name, Layer: digest.FromString(name + strconv.Itoa(i)), Served: true})
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
