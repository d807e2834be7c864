//go:build linux

package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
)

// accountingLayer writes the layer of the scripted workload.
func accountingLayer(t *testing.T) string {
	src := t.TempDir()
	writeFile(t, src, "small", strings.Repeat("s", 10_000))
	writeFile(t, src, "big", strings.Repeat("b", 300_001))
	writeFile(t, src, "unread", strings.Repeat("u", 5_000))
	writeFile(t, src, "sub/one", "1")
	writeFile(t, src, "sub/two", "22")
	if err := os.Symlink("small", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	return src
}

// workload reads small and big in full, opens unread without reading it,
// reads small again, reads one link, looks up a missing name and lists sub.
func workload(t *testing.T, mp string) {
	t.Helper()
	p := func(rel string) string { return filepath.Join(mp, rel) }
	for _, name := range []string{"small", "big", "small"} {
		f, err := os.Open(p(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, f); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	f, err := os.Open(p("unread"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if target, err := os.Readlink(p("link")); err != nil || target != "small" {
		t.Fatalf("readlink = %q, %v", target, err)
	}
	if _, err := os.Stat(p("missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stat missing: %v", err)
	}
	if ents, err := os.ReadDir(p("sub")); err != nil || len(ents) != 2 {
		t.Fatalf("readdir sub = %v, %v", ents, err)
	}
}

// TestAccounting: exact figures for a scripted workload in both
// modes; in "open" mode with passthrough the daemon sees no read at all, in
// "bytes" mode it sees them and counts exact bytes, once (the page cache is
// kept across opens); in "reads" mode it sees no open, and counts each
// file whose content was read once, with its exact bytes.
func TestAccounting(t *testing.T) {
	requireFUSE(t)
	src := accountingLayer(t)
	const small, big, unread = 10_000, 300_001, 5_000
	for _, mode := range []Accounting{AccountOpen, AccountBytes, AccountReads} {
		t.Run(mode.String(), func(t *testing.T) {
			m, mp, layer := mountLayer(t, src, WithAccounting(mode))
			workload(t, mp)
			stats := statsOf(t, m)
			if len(stats) != 1 || stats[0].Layer != layer {
				t.Fatalf("stats = %+v, want one entry for %s", stats, layer)
			}
			s := stats[0]
			if s.Accounting != mode || s.Mounts != 1 {
				t.Errorf("accounting %v mounts %d", s.Accounting, s.Mounts)
			}
			wantOpens, wantUnique := int64(4), int64(3)
			if mode == AccountReads {
				// small's content fetched once (its second read comes
				// from the page cache), big's once, unread's never.
				wantOpens, wantUnique = 2, 2
			}
			if s.Opens != wantOpens || s.UniqueFiles != wantUnique || s.Readlinks != 1 || s.Readdirs != 1 {
				t.Errorf("opens %d unique %d readlinks %d readdirs %d; want %d %d 1 1", s.Opens, s.UniqueFiles, s.Readlinks, s.Readdirs, wantOpens, wantUnique)
			}
			if len(s.Errors) != 0 || s.Absent != 1 {
				t.Errorf("errors %v absent %d, want none and one absent name (missing)", s.Errors, s.Absent)
			}
			// small, big, unread, link, missing, sub, then sub's two
			// entries through READDIRPLUS (or not, if the kernel used
			// plain READDIR).
			if s.Lookups != 6 && s.Lookups != 8 {
				t.Errorf("lookups %d, want 6 or 8", s.Lookups)
			}
			if s.FirstAccess.IsZero() || s.LastAccess.Before(s.FirstAccess) {
				t.Errorf("access times %v, %v", s.FirstAccess, s.LastAccess)
			}
			prof := map[string]usage.FileAccess{}
			for _, fa := range profileOf(t, m, layer) {
				prof[fa.Path] = fa
			}
			switch {
			case mode == AccountReads:
				if s.Passthrough || s.BytesAreFileSizes || s.Reads == 0 {
					t.Errorf("reads mode: passthrough %v sizes %v reads %d", s.Passthrough, s.BytesAreFileSizes, s.Reads)
				}
				if s.BytesRead != small+big {
					t.Errorf("bytes read %d, want %d (each file once, nothing for the unread one)", s.BytesRead, small+big)
				}
				want := map[string]usage.FileAccess{"small": {Path: "small", Opens: 1, Bytes: small}, "big": {Path: "big", Opens: 1, Bytes: big}}
				if len(prof) != 2 || prof["small"] != want["small"] || prof["big"] != want["big"] {
					t.Errorf("profile %v, want %v", prof, want)
				}
			case mode == AccountBytes:
				if s.Passthrough || s.BytesAreFileSizes || s.Reads == 0 {
					t.Errorf("bytes mode: passthrough %v sizes %v reads %d", s.Passthrough, s.BytesAreFileSizes, s.Reads)
				}
				if s.BytesRead != small+big {
					t.Errorf("bytes read %d, want %d (each file once, nothing for the unread one)", s.BytesRead, small+big)
				}
				want := map[string]usage.FileAccess{
					"small":  {Path: "small", Opens: 2, Bytes: small},
					"big":    {Path: "big", Opens: 1, Bytes: big},
					"unread": {Path: "unread", Opens: 1, Bytes: 0},
				}
				if len(prof) != 3 || prof["small"] != want["small"] || prof["big"] != want["big"] || prof["unread"] != want["unread"] {
					t.Errorf("profile %v, want %v", prof, want)
				}
			case s.Passthrough:
				if !s.BytesAreFileSizes || s.Reads != 0 {
					t.Errorf("open mode with passthrough: sizes %v, %d reads reached the daemon (want 0)", s.BytesAreFileSizes, s.Reads)
				}
				if s.BytesRead != 2*small+big+unread {
					t.Errorf("bytes %d, want the sizes of the files opened, %d", s.BytesRead, 2*small+big+unread)
				}
				if prof["small"] != (usage.FileAccess{Path: "small", Opens: 2, Bytes: 2 * small}) || prof["unread"] != (usage.FileAccess{Path: "unread", Opens: 1, Bytes: unread}) {
					t.Errorf("profile %v", prof)
				}
			default:
				testutil.Skip(t, "kernel passthrough not granted here; open mode serves reads in userspace")
			}
		})
	}
}

func TestProfileLimit(t *testing.T) {
	a := newAccount(2)
	for _, p := range []string{"a", "b", "c", "a"} {
		a.opened(p).addBytes(1)
	}
	var s usage.LayerStats
	a.stats(&s)
	if s.Opens != 4 || s.UniqueFiles != 2 || !s.ProfileTruncated {
		t.Errorf("opens %d unique %d truncated %v; want 4 2 true", s.Opens, s.UniqueFiles, s.ProfileTruncated)
	}
	if p := a.profile(); len(p) != 2 || p[0] != (usage.FileAccess{Path: "a", Opens: 2, Bytes: 2}) {
		t.Errorf("profile %v", p)
	}
}

// TestBytesModeReadahead: userspace-read mounts get a larger readahead than
// the kernel's FUSE default of 128 KiB.
func TestBytesModeReadahead(t *testing.T) {
	requireFUSE(t)
	_, mp, _ := mountLayer(t, t.TempDir(), WithAccounting(AccountBytes))
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev)))
	if err != nil {
		testutil.Skip(t, "no bdi in sysfs: %v", err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(readaheadKiB) {
		t.Errorf("read_ahead_kb = %s, want %d", got, readaheadKiB)
	}
}

// TestMountDevAsksServerNothing: the readahead setup finds the mount's
// device without a request to the server (the daemon never makes requests
// through its own mounts), and finds the one in the mount table.
func TestMountDevAsksServerNothing(t *testing.T) {
	requireFUSE(t)
	m, mp, _ := mountLayer(t, t.TempDir(), WithAccounting(AccountBytes), WithTimeouts(0, 0, 0))
	requests := func() int64 {
		s := statsOf(t, m)
		if len(s) != 1 {
			t.Fatalf("Stats = %+v, want one layer", s)
		}
		return s[0].Lookups + s[0].Getattrs + s[0].Opens + s[0].Readdirs + s[0].Readlinks
	}
	before := requests()
	major, minor, err := mountDev(mp)
	if err != nil {
		t.Fatal(err)
	}
	if got := requests(); got != before {
		t.Errorf("mountDev sent %d requests to the server", got-before)
	}
	ms, err := mountutil.Under(mp)
	if err != nil || len(ms) != 1 {
		t.Fatalf("mount table: %+v, %v", ms, err)
	}
	if int(major) != ms[0].Major || int(minor) != ms[0].Minor {
		t.Errorf("mountDev = %d:%d, mount table %d:%d", major, minor, ms[0].Major, ms[0].Minor)
	}
	// The control: a plain stat of the mount root does reach the server.
	var st unix.Stat_t
	if err := unix.Stat(mp, &st); err != nil {
		t.Fatal(err)
	}
	if requests() == before {
		t.Errorf("a stat of the mount root reached no server: the test proves nothing")
	}
}

// TestErrorsLeaveOutAbsentNames: the names and attributes overlayfs asks
// for in every layer, and that do not exist, are counted apart from
// errors; an entry its directory listed and that is then gone from the
// store is an error.
func TestErrorsLeaveOutAbsentNames(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "kept", "x")
	writeFile(t, dir, "removed", "x")
	writeFile(t, dir, ".cvmfscatalog", "")
	root, acct := newTestRoot(t, dir)
	ctx := context.Background()

	var out fuse.EntryOut
	if _, errno := root.Lookup(ctx, "missing", &out); errno != syscall.ENOENT {
		t.Fatalf("lookup missing = %v, want ENOENT", errno)
	}
	if _, errno := root.Lookup(ctx, ".cvmfscatalog", &out); errno != syscall.ENOENT {
		t.Fatalf("lookup .cvmfscatalog = %v, want ENOENT", errno)
	}
	if _, errno := root.Getxattr(ctx, "trusted.overlay.opaque", nil); errno != syscall.ENODATA {
		t.Fatalf("getxattr = %v, want ENODATA", errno)
	}
	d := &dirHandle{n: root, fd: -1}
	if errno := d.load(); errno != 0 {
		t.Fatalf("list root: %v", errno)
	}
	defer d.Releasedir(ctx, 0)
	if _, errno := root.Lookup(ctx, "also-missing", &out); errno != syscall.ENOENT {
		t.Fatalf("lookup also-missing = %v, want ENOENT", errno)
	}
	var s usage.LayerStats
	acct.stats(&s)
	if len(s.Errors) != 0 || s.Absent != 4 {
		t.Fatalf("errors %v absent %d, want no error and 4 absent", s.Errors, s.Absent)
	}

	if err := os.Remove(filepath.Join(dir, "removed")); err != nil {
		t.Fatal(err)
	}
	if _, errno := root.Lookup(ctx, "removed", &out); errno != syscall.ENOENT {
		t.Fatalf("lookup removed = %v, want ENOENT", errno)
	}
	acct.stats(&s)
	if s.Errors["ENOENT"] != 1 || len(s.Errors) != 1 || s.Absent != 4 {
		t.Fatalf("errors %v absent %d, want one ENOENT (a listed entry gone) and 4 absent", s.Errors, s.Absent)
	}
}

// TestErrorsCountLookupsInARemovedLayer: once the layer directory itself
// is removed from the store, a lookup is no longer of an absent name: it
// is an error.
func TestErrorsCountLookupsInARemovedLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layerfs")
	writeFile(t, dir, "a", "x")
	root, acct := newTestRoot(t, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	var out fuse.EntryOut
	if _, errno := root.Lookup(context.Background(), "b", &out); errno != syscall.ENOENT {
		t.Fatalf("lookup b = %v, want ENOENT", errno)
	}
	var s usage.LayerStats
	acct.stats(&s)
	if s.Errors["ENOENT"] != 1 || s.Absent != 0 {
		t.Fatalf("errors %v absent %d, want one ENOENT and nothing absent", s.Errors, s.Absent)
	}
}
