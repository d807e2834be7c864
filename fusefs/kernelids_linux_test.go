//go:build linux

package fusefs

import (
	"os"
	"path"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// fakeBridge is a RawFileSystem over a fixed tree of paths that gives node
// IDs of its own per instance (as go-fuse's bridge does per process),
// counts lookups and panics when a FORGET takes more than it gave, as
// go-fuse does.
type fakeBridge struct {
	fuse.RawFileSystem
	tree  map[string]bool // path -> is a directory
	ids   map[string]uint64
	paths map[uint64]string
	refs  map[uint64]uint64
	next  uint64
}

func newFakeBridge(base uint64, tree map[string]bool) *fakeBridge {
	return &fakeBridge{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		tree:          tree,
		ids:           map[string]uint64{"": 1},
		paths:         map[uint64]string{1: ""},
		refs:          map[uint64]uint64{},
		next:          base,
	}
}

func (f *fakeBridge) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	parent, ok := f.paths[h.NodeId]
	if !ok {
		panic("unknown node")
	}
	p := path.Join(parent, name)
	if _, ok := f.tree[p]; !ok {
		return fuse.ENOENT
	}
	id, ok := f.ids[p]
	if !ok {
		id = f.next
		f.next++
		f.ids[p], f.paths[id] = id, p
	}
	f.refs[id]++
	out.NodeId = id
	return fuse.OK
}

func (f *fakeBridge) Forget(id, n uint64) {
	if f.refs[id] < n {
		panic("lookup count below zero")
	}
	f.refs[id] -= n
}

func (f *fakeBridge) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	p, ok := f.paths[in.NodeId]
	if !ok {
		panic("unknown node")
	}
	out.Ino = uint64(len(p))
	return fuse.OK
}

func (f *fakeBridge) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if in.Fh != 0 && in.Fh != 7 {
		panic("unknown file handle")
	}
	return fuse.ReadResultData([]byte(f.paths[in.NodeId])), fuse.OK
}

func (f *fakeBridge) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	out.Fh = 7
	return fuse.OK
}

func (f *fakeBridge) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if in.Fh != 7 {
		panic("unknown file handle")
	}
}

func lookup(t *testing.T, ids *kernelIDs, parent uint64, name string) uint64 {
	t.Helper()
	var out fuse.EntryOut
	if st := ids.Lookup(nil, &fuse.InHeader{NodeId: parent}, name, &out); !st.Ok() {
		t.Fatalf("lookup %q in %d: %v", name, parent, st)
	}
	return out.NodeId
}

func getattr(ids *kernelIDs, k uint64) (string, fuse.Status) {
	var out fuse.AttrOut
	st := ids.GetAttr(nil, &fuse.GetAttrIn{InHeader: fuse.InHeader{NodeId: k}}, &out)
	return "", st
}

// TestKernelIDsSurviveASuccessor: node IDs and file handles given by one
// process are served by the next one, which has a bridge of other IDs and
// has seen nothing; FORGETs it cannot match are absorbed.
func TestKernelIDsSurviveASuccessor(t *testing.T) {
	tree := map[string]bool{"a": true, "a/b": true, "a/b/f": false, "g": false}
	j, err := newNodeJournal()
	if err != nil {
		t.Fatal(err)
	}
	first := newKernelIDs(newFakeBridge(100, tree), j, nil)
	a := lookup(t, first, 1, "a")
	b := lookup(t, first, a, "b")
	f := lookup(t, first, b, "f")
	if again := lookup(t, first, b, "f"); again != f {
		t.Fatalf("a second lookup gave node ID %d, then %d", f, again)
	}
	var oo fuse.OpenOut
	if st := first.Open(nil, &fuse.OpenIn{InHeader: fuse.InHeader{NodeId: f}}, &oo); !st.Ok() || oo.Fh == 7 || oo.Fh == 0 {
		t.Fatalf("open: %v, handle %d (want one of the kernel's own)", st, oo.Fh)
	}

	// The successor: the same journal, another bridge, another epoch.
	dup, err := j.dup()
	if err != nil {
		t.Fatal(err)
	}
	j2, recs, err := openNodeJournal(dup)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("journal holds %d records, want 3: %+v", len(recs), recs)
	}
	bridge := newFakeBridge(500, tree)
	next := newKernelIDs(bridge, j2, recs)
	rr, st := next.Read(nil, &fuse.ReadIn{InHeader: fuse.InHeader{NodeId: f}, Fh: oo.Fh}, make([]byte, 64))
	if !st.Ok() {
		t.Fatalf("read of a node ID of the predecessor, with its handle: %v", st)
	}
	if got, _ := rr.Bytes(nil); string(got) != "a/b/f" {
		t.Fatalf("read %q, want the file at a/b/f", got)
	}
	next.Release(nil, &fuse.ReleaseIn{InHeader: fuse.InHeader{NodeId: f}, Fh: oo.Fh}) // must not reach the bridge
	if _, st := getattr(next, b); !st.Ok() {
		t.Fatalf("getattr of a revived parent: %v", st)
	}
	// The kernel forgets what it looked up twice from the predecessor:
	// the successor never gives back the lookups of a predecessor's node
	// (its kernel count is unknown here, and a request racing the FORGET
	// would find the bridge without it), nor panics on unknown IDs.
	next.Forget(f, 2)
	next.Forget(a, 1)
	next.Forget(12345, 3)
	if got := bridge.refs[bridge.ids["a/b/f"]]; got != 1 {
		t.Fatalf("bridge holds %d lookups of a/b/f after FORGETs of a predecessor's node, want 1", got)
	}
	if _, st := getattr(next, f); !st.Ok() {
		t.Fatalf("getattr after a predecessor's FORGET: %v", st)
	}
	// A new path gets a new node ID, a known path its old one.
	g := lookup(t, next, 1, "g")
	if g <= f {
		t.Fatalf("new node ID %d reuses one given before (up to %d)", g, f)
	}
	// A node ID given here goes from the bridge when the kernel forgets it.
	next.Forget(g, 1)
	if got := bridge.refs[bridge.ids["g"]]; got != 0 {
		t.Fatalf("bridge holds %d lookups of g after the kernel forgot it", got)
	}
	if again := lookup(t, next, b, "f"); again != f {
		t.Fatalf("a/b/f looked up again got node ID %d, had %d", again, f)
	}
	// A node ID never given is stale.
	if _, st := getattr(next, 999); st != fuse.Status(syscall.ESTALE) {
		t.Fatalf("getattr of an unknown node ID: %v, want ESTALE", st)
	}
}

// TestNodeJournalTornRecord: a record whose length was never written (its
// writer killed in between) ends the journal; appending goes on there.
func TestNodeJournalTornRecord(t *testing.T) {
	j, err := newNodeJournal()
	if err != nil {
		t.Fatal(err)
	}
	if err := j.add(2, 1, "first"); err != nil {
		t.Fatal(err)
	}
	if err := j.add(3, 2, "second"); err != nil {
		t.Fatal(err)
	}
	// The second record's body was written, its length not: a process
	// killed in between.
	if _, err := j.f.WriteAt(make([]byte, 4), align4(journalHeader+int64(len("first")))); err != nil {
		t.Fatal(err)
	}
	dup, _ := j.dup()
	j2, recs, err := openNodeJournal(dup)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if len(recs) != 1 || recs[2].name != "first" {
		t.Fatalf("records %+v, want only the first", recs)
	}
	// Appending goes on after the last whole record.
	if err := j2.add(4, 1, "third"); err != nil {
		t.Fatal(err)
	}
	dup, _ = j2.dup()
	_, recs, _ = openNodeJournal(dup)
	if len(recs) != 2 || recs[4].name != "third" {
		t.Fatalf("records after an append %+v", recs)
	}
}

// FuzzNodeJournal: any bytes read as a journal give records or stop; never
// a panic, never a record for the root or with no parent.
func FuzzNodeJournal(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{25, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c', 'd', 'e'})
	f.Fuzz(func(t *testing.T, b []byte) {
		fd, err := os.CreateTemp(t.TempDir(), "journal")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fd.Write(b); err != nil {
			t.Fatal(err)
		}
		j, recs, err := openNodeJournal(fd)
		if err != nil {
			return
		}
		defer j.Close()
		for id, r := range recs {
			if id <= rootNodeID || r.parent == 0 || r.name == "" {
				t.Fatalf("record %d: %+v", id, r)
			}
		}
	})
}
