//go:build linux

package fusefs

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// maxRead returns the max_read option of the FUSE mount at mp.
func maxRead(t *testing.T, mp string) string {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mp))
	if err != nil || len(ms) != 1 {
		t.Fatalf("mountinfo of %s: %v, %v", mp, ms, err)
	}
	for _, o := range strings.Split(ms[0].VFSOptions, ",") {
		if v, ok := strings.CutPrefix(o, "max_read="); ok {
			return v
		}
	}
	t.Fatalf("no max_read in %q", ms[0].VFSOptions)
	return ""
}

// TestRequestSizes: a mount whose reads the daemon serves negotiates
// READs of maxReadReply; once the kernel has granted passthrough to a layer of
// a store, later mounts from that store, which serve no data, negotiate
// small ones. Where the kernel grants no passthrough, every mount keeps
// large READs.
func TestRequestSizes(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	layers := dirSource{}
	for _, name := range []string{"a", "b"} {
		dir := filepath.Join(src, name)
		writeFile(t, dir, "f", name)
		layers[testDigest(dir)] = dir
	}
	mountAll := func(t *testing.T, mode Accounting) (*Manager, []string) {
		m, err := NewManager(layers, WithAccounting(mode))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close(context.Background()) })
		base := t.TempDir()
		sweepMounts(t, base)
		var mps []string
		for _, name := range []string{"a", "b"} {
			mp := newDir(t, base, name)
			if err := m.Mount(context.Background(), mp, testDigest(filepath.Join(src, name))); err != nil {
				t.Fatal(err)
			}
			mps = append(mps, mp)
		}
		return m, mps
	}
	t.Run("bytes", func(t *testing.T) {
		_, mps := mountAll(t, AccountBytes)
		for _, mp := range mps {
			if got := maxRead(t, mp); got != strconv.Itoa(maxReadReply) {
				t.Errorf("bytes mode: max_read=%s, want %d", got, maxReadReply)
			}
		}
	})
	t.Run("open", func(t *testing.T) {
		m, mps := mountAll(t, AccountOpen)
		// The first mount of the store does not know yet.
		if got := maxRead(t, mps[0]); got != strconv.Itoa(maxReadReply) {
			t.Errorf("first mount: max_read=%s, want %d", got, maxReadReply)
		}
		if !passthroughOn(m, mps[0]) {
			// Reads go to the daemon: every mount keeps large READs.
			if got := maxRead(t, mps[1]); got != strconv.Itoa(maxReadReply) {
				t.Errorf("no passthrough: max_read=%s, want %d", got, maxReadReply)
			}
			return
		}
		if got := maxRead(t, mps[1]); got != "8192" {
			t.Errorf("mount after passthrough was granted: max_read=%s, want 8192", got)
		}
		if !passthroughOn(m, mps[1]) {
			t.Error("second mount lost passthrough")
		}
	})
}

// readSizes records the sizes of the READ requests in go-fuse's debug
// log ("rx N: READ nI {Fh F [OFF +SIZE) ...}").
type readSizes struct {
	mu  sync.Mutex
	max int
	n   int
}

var readLine = regexp.MustCompile(`rx \d+: READ .*\[\d+ \+(\d+)\)`)

func (r *readSizes) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range readLine.FindAllSubmatch(p, -1) {
		v, _ := strconv.Atoi(string(m[1]))
		r.max = max(r.max, v)
		r.n++
	}
	return len(p), nil
}

// TestLargeReadsSmallBuffers: a mount whose reads go to the daemon
// negotiates a small max_write (small reader buffers) and still gets READs
// of maxReadReply (1 MiB, FUSE_MAX_PAGES given in the reply to INIT).
func TestLargeReadsSmallBuffers(t *testing.T) {
	src := t.TempDir()
	// 4 MiB: the kernel's readahead ramps up to its window in the first
	// megabytes.
	writeFile(t, src, "big", strings.Repeat("0123456789abcdef", 1<<18))
	for _, tc := range []struct {
		name string
		opts []Opt
	}{
		{"reads", []Opt{WithAccounting(AccountReads)}},
		{"bytes", []Opt{WithAccounting(AccountBytes)}},
		{"reads-kernel-mount", []Opt{WithAccounting(AccountReads), WithoutSelfAccess()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := &readSizes{}
			_, mp, _ := mountLayer(t, src, append(tc.opts, withRequestLog(rs))...)
			if got := maxRead(t, mp); got != strconv.Itoa(maxReadReply) {
				t.Errorf("max_read=%s, want %d", got, maxReadReply)
			}
			// Read by another process: this one may not read a mount
			// it serves WithoutSelfAccess (see that option).
			b, err := exec.Command("cat", filepath.Join(mp, "big")).Output()
			if err != nil || len(b) != 4<<20 {
				t.Fatalf("read: %d bytes, %v", len(b), err)
			}
			rs.mu.Lock()
			defer rs.mu.Unlock()
			if rs.n == 0 {
				t.Fatal("no READ in the request log")
			}
			if rs.max != maxReadReply {
				t.Errorf("largest READ %d bytes over %d requests, want %d", rs.max, rs.n, maxReadReply)
			}
		})
	}
}
