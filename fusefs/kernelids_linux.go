//go:build linux

package fusefs

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// kernelIDs is the outermost RawFileSystem of a mount. It gives the kernel
// node IDs and file handles of its own and translates them to those of the
// go-fuse bridge behind it, whose IDs live only as long as this process.
//
// Why: the FUSE connection outlives the daemon (a custody process holds its
// /dev/fuse descriptor), and a successor that takes it over must answer
// requests about every node ID the kernel still holds. Node IDs given here
// are recorded in a journal (nodeJournal: the node ID of the parent and the
// name), so the successor revives an unknown node ID by looking its path up
// again, parent first. File handles carry this process's epoch in their
// high 32 bits: a handle of a predecessor is recognised and not mistaken for
// one of the bridge's (the request is then served as if it had no handle,
// and its RELEASE is dropped).
//
// Lookup counts are kept per kernel node ID as the bridge's count (each
// reply that hands a node to the kernel adds one on both sides). A FORGET
// gives back at most what the bridge holds, and one for a node ID never
// seen here is ignored: after a handover the kernel forgets nodes it looked
// up from the predecessor, and go-fuse would panic on counts below zero.
// Nodes of a predecessor are pinned (see kernelNode).
type kernelIDs struct {
	inner   fuse.RawFileSystem
	journal *nodeJournal
	// epoch is the high half of every file handle given out here.
	epoch uint64

	mu       sync.RWMutex
	toBridge map[uint64]*kernelNode // by kernel node ID: the live ones
	toKernel map[uint64]uint64      // bridge node ID -> kernel node ID
	byPath   map[nodeRecord]uint64  // every recorded node ID by parent and name
	records  map[uint64]nodeRecord  // parent and name of every recorded node ID
	next     uint64

	revival sync.Mutex // one revival at a time (they are rare)
	// firstOwn is the first node ID this process gives: the ones below
	// were given by predecessors (see kernelNode.pinned).
	firstOwn uint64
	// journalErrors counts node IDs handed out without a record (the
	// journal could not be written): a successor cannot revive them.
	journalErrors atomic.Int64
	// revived counts node IDs revived from the journal.
	revived atomic.Int64
}

// kernelNode is a live kernel node ID: the bridge's node ID for it and the
// lookups of it the bridge holds. A pinned node is one a predecessor gave
// the kernel: the kernel's count of it is unknown here, and FORGETs sent
// for the predecessor's lookups may still come (even after the node was
// looked up again here), so its bridge node is never let go: a request
// racing such a FORGET would find the bridge without it.
type kernelNode struct {
	bridge uint64
	refs   uint64
	pinned bool
}

const rootNodeID = fuse.FUSE_ROOT_ID

// newKernelIDs wraps inner. recs are the records of a predecessor's
// journal (nil for a new mount); j is where new node IDs are recorded.
func newKernelIDs(inner fuse.RawFileSystem, j *nodeJournal, recs map[uint64]nodeRecord) *kernelIDs {
	var b [4]byte
	_, _ = rand.Read(b[:])
	epoch := uint64(binary.LittleEndian.Uint32(b[:])|1) << 32
	t := &kernelIDs{
		inner:    inner,
		journal:  j,
		epoch:    epoch,
		toBridge: map[uint64]*kernelNode{},
		toKernel: map[uint64]uint64{},
		byPath:   make(map[nodeRecord]uint64, len(recs)),
		records:  make(map[uint64]nodeRecord, len(recs)),
		next:     rootNodeID + 1,
	}
	for id, r := range recs {
		t.records[id] = r
		t.byPath[r] = id
		t.next = max(t.next, id+1)
	}
	t.firstOwn = t.next
	return t
}

// resolve returns the bridge's node ID for kernel node ID k, reviving it
// from the journal if this process has not seen it.
func (t *kernelIDs) resolve(cancel <-chan struct{}, k uint64) (uint64, fuse.Status) {
	if k == rootNodeID {
		return k, fuse.OK
	}
	t.mu.RLock()
	kn := t.toBridge[k]
	var b uint64
	if kn != nil {
		b = kn.bridge
	}
	t.mu.RUnlock()
	if kn != nil {
		return b, fuse.OK
	}
	return t.revive(cancel, k)
}

// maxDepth bounds the chain of parents followed in a revival (a corrupt
// journal could hold a cycle).
const maxDepth = 4096

// revive looks the path of k up again through the bridge, from its nearest
// live ancestor down, and links every node on the way.
func (t *kernelIDs) revive(cancel <-chan struct{}, k uint64) (uint64, fuse.Status) {
	t.revival.Lock()
	defer t.revival.Unlock()
	var chain []nodeRecord
	var ids []uint64
	base := uint64(0)
	t.mu.RLock()
	for id := k; ; {
		if id == rootNodeID {
			base = rootNodeID
			break
		}
		if kn := t.toBridge[id]; kn != nil {
			base = kn.bridge
			break
		}
		r, ok := t.records[id]
		if !ok || len(ids) >= maxDepth {
			t.mu.RUnlock()
			return 0, fuse.Status(syscall.ESTALE)
		}
		chain = append(chain, r)
		ids = append(ids, id)
		id = r.parent
	}
	t.mu.RUnlock()
	b := base
	for i := len(chain) - 1; i >= 0; i-- {
		var out fuse.EntryOut
		h := fuse.InHeader{NodeId: b}
		if st := t.inner.Lookup(cancel, &h, chain[i].name, &out); !st.Ok() {
			if st == fuse.ENOENT {
				return 0, fuse.Status(syscall.ESTALE)
			}
			return 0, st
		}
		if out.NodeId == 0 {
			return 0, fuse.Status(syscall.ESTALE)
		}
		b = out.NodeId
		t.link(ids[i], b)
		t.revived.Add(1)
	}
	return b, fuse.OK
}

// link records one more lookup of bridge node b held for kernel node k.
func (t *kernelIDs) link(k, b uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	kn := t.toBridge[k]
	if kn == nil || kn.bridge != b {
		if kn != nil {
			delete(t.toKernel, kn.bridge)
		}
		kn = &kernelNode{bridge: b}
		t.toBridge[k] = kn
	}
	t.toKernel[b] = k
	kn.refs++
	kn.pinned = kn.pinned || k < t.firstOwn
}

// give returns the kernel node ID for bridge node b, just looked up as
// name in kernel node parent, and counts the lookup.
func (t *kernelIDs) give(b, parent uint64, name string) uint64 {
	if b == rootNodeID {
		return b
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.toKernel[b]
	if !ok {
		key := nodeRecord{parent: parent, name: name}
		k, ok = t.byPath[key]
		if kn := t.toBridge[k]; !ok || (kn != nil && kn.bridge != b) {
			// A new path, or one whose node ID now stands for another
			// node (the backing entry was replaced): a new node ID.
			k = t.next
			t.next++
			t.byPath[key] = k
			t.records[k] = key
			if err := t.journal.add(k, parent, name); err != nil {
				t.journalErrors.Add(1)
			}
		}
		t.toKernel[b] = k
	}
	kn := t.toBridge[k]
	if kn == nil {
		kn = &kernelNode{bridge: b, pinned: k < t.firstOwn}
		t.toBridge[k] = kn
	}
	kn.refs++
	return k
}

// in translates the node ID of a request.
func (t *kernelIDs) in(cancel <-chan struct{}, h *fuse.InHeader) fuse.Status {
	b, st := t.resolve(cancel, h.NodeId)
	h.NodeId = b
	return st
}

// fhOut turns a file handle of the bridge into one for the kernel.
func (t *kernelIDs) fhOut(fh uint64) uint64 {
	if fh == 0 {
		return 0
	}
	return t.epoch | fh
}

// fhIn turns a file handle from the kernel into the bridge's; false for a
// handle of a predecessor (0 is returned: no handle).
func (t *kernelIDs) fhIn(fh uint64) (uint64, bool) {
	if fh == 0 {
		return 0, true
	}
	if fh&^0xffffffff != t.epoch {
		return 0, false
	}
	return fh & 0xffffffff, true
}

func (t *kernelIDs) String() string      { return t.inner.String() }
func (t *kernelIDs) SetDebug(debug bool) { t.inner.SetDebug(debug) }
func (t *kernelIDs) Init(s *fuse.Server) { t.inner.Init(s) }
func (t *kernelIDs) OnUnmount()          { t.inner.OnUnmount() }

func (t *kernelIDs) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	parent := h.NodeId
	if st := t.in(cancel, h); !st.Ok() {
		return st
	}
	st := t.inner.Lookup(cancel, h, name, out)
	if st.Ok() && out.NodeId != 0 {
		out.NodeId = t.give(out.NodeId, parent, name)
	}
	return st
}

func (t *kernelIDs) Forget(k, nlookup uint64) {
	if k == rootNodeID {
		return
	}
	t.mu.Lock()
	kn := t.toBridge[k]
	if kn == nil {
		t.mu.Unlock()
		return
	}
	n := min(nlookup, kn.refs)
	if kn.pinned {
		n = min(nlookup, kn.refs-1)
	}
	kn.refs -= n
	b := kn.bridge
	if kn.refs == 0 {
		delete(t.toBridge, k)
		delete(t.toKernel, b)
	}
	t.mu.Unlock()
	if n > 0 {
		t.inner.Forget(b, n)
	}
}

func (t *kernelIDs) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	if in.Flags_&fuse.FUSE_GETATTR_FH != 0 {
		if fh, ok := t.fhIn(in.Fh_); ok {
			in.Fh_ = fh
		} else {
			in.Flags_ &^= fuse.FUSE_GETATTR_FH
			in.Fh_ = 0
		}
	}
	return t.inner.GetAttr(cancel, in, out)
}

func (t *kernelIDs) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.SetAttr(cancel, in, out)
}

func (t *kernelIDs) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	parent := in.NodeId
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	st := t.inner.Mknod(cancel, in, name, out)
	if st.Ok() && out.NodeId != 0 {
		out.NodeId = t.give(out.NodeId, parent, name)
	}
	return st
}

func (t *kernelIDs) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	parent := in.NodeId
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	st := t.inner.Mkdir(cancel, in, name, out)
	if st.Ok() && out.NodeId != 0 {
		out.NodeId = t.give(out.NodeId, parent, name)
	}
	return st
}

func (t *kernelIDs) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if st := t.in(cancel, h); !st.Ok() {
		return st
	}
	return t.inner.Unlink(cancel, h, name)
}

func (t *kernelIDs) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if st := t.in(cancel, h); !st.Ok() {
		return st
	}
	return t.inner.Rmdir(cancel, h, name)
}

func (t *kernelIDs) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	b, st := t.resolve(cancel, in.Newdir)
	if !st.Ok() {
		return st
	}
	in.Newdir = b
	return t.inner.Rename(cancel, in, oldName, newName)
}

func (t *kernelIDs) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	parent := in.NodeId
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	b, st := t.resolve(cancel, in.Oldnodeid)
	if !st.Ok() {
		return st
	}
	in.Oldnodeid = b
	st = t.inner.Link(cancel, in, name, out)
	if st.Ok() && out.NodeId != 0 {
		out.NodeId = t.give(out.NodeId, parent, name)
	}
	return st
}

func (t *kernelIDs) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	parent := h.NodeId
	if st := t.in(cancel, h); !st.Ok() {
		return st
	}
	st := t.inner.Symlink(cancel, h, target, name, out)
	if st.Ok() && out.NodeId != 0 {
		out.NodeId = t.give(out.NodeId, parent, name)
	}
	return st
}

func (t *kernelIDs) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	if st := t.in(cancel, h); !st.Ok() {
		return nil, st
	}
	return t.inner.Readlink(cancel, h)
}

func (t *kernelIDs) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	return t.inner.Access(cancel, in)
}

func (t *kernelIDs) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if st := t.in(cancel, h); !st.Ok() {
		return 0, st
	}
	return t.inner.GetXAttr(cancel, h, attr, dest)
}

func (t *kernelIDs) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if st := t.in(cancel, h); !st.Ok() {
		return 0, st
	}
	return t.inner.ListXAttr(cancel, h, dest)
}

func (t *kernelIDs) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	return t.inner.SetXAttr(cancel, in, attr, data)
}

func (t *kernelIDs) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	if st := t.in(cancel, h); !st.Ok() {
		return st
	}
	return t.inner.RemoveXAttr(cancel, h, attr)
}

func (t *kernelIDs) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	parent := in.NodeId
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	st := t.inner.Create(cancel, in, name, out)
	if st.Ok() {
		if out.NodeId != 0 {
			out.NodeId = t.give(out.NodeId, parent, name)
		}
		out.Fh = t.fhOut(out.Fh)
	}
	return st
}

func (t *kernelIDs) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	// A read-only layer makes no files, named or not.
	return fuse.Status(syscall.EROFS)
}

func (t *kernelIDs) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	st := t.inner.Open(cancel, in, out)
	if st.Ok() {
		out.Fh = t.fhOut(out.Fh)
	}
	return st
}

func (t *kernelIDs) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return nil, st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Read(cancel, in, buf)
}

func (t *kernelIDs) Lseek(cancel <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Lseek(cancel, in, out)
}

func (t *kernelIDs) GetLk(cancel <-chan struct{}, in *fuse.LkIn, out *fuse.LkOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.GetLk(cancel, in, out)
}

func (t *kernelIDs) SetLk(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.SetLk(cancel, in)
}

func (t *kernelIDs) SetLkw(cancel <-chan struct{}, in *fuse.LkIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.SetLkw(cancel, in)
}

func (t *kernelIDs) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	fh, ok := t.fhIn(in.Fh)
	if !ok || t.in(cancel, &in.InHeader) != fuse.OK {
		return // a predecessor's handle: nothing of it lives here
	}
	in.Fh = fh
	t.inner.Release(cancel, in)
}

func (t *kernelIDs) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return 0, st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Write(cancel, in, data)
}

func (t *kernelIDs) Writev(cancel <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return 0, st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Writev(cancel, in, data)
}

func (t *kernelIDs) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return 0, st
	}
	b, st := t.resolve(cancel, in.NodeIdOut)
	if !st.Ok() {
		return 0, st
	}
	in.NodeIdOut = b
	in.FhIn, _ = t.fhIn(in.FhIn)
	in.FhOut, _ = t.fhIn(in.FhOut)
	return t.inner.CopyFileRange(cancel, in)
}

func (t *kernelIDs) Ioctl(cancel <-chan struct{}, in *fuse.IoctlIn, inbuf []byte, out *fuse.IoctlOut, outbuf []byte) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Ioctl(cancel, in, inbuf, out, outbuf)
}

func (t *kernelIDs) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Flush(cancel, in)
}

func (t *kernelIDs) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Fsync(cancel, in)
}

func (t *kernelIDs) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Fallocate(cancel, in)
}

func (t *kernelIDs) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	st := t.inner.OpenDir(cancel, in, out)
	if st.Ok() {
		out.Fh = t.fhOut(out.Fh)
	}
	return st
}

func (t *kernelIDs) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.ReadDir(cancel, in, out)
}

func (t *kernelIDs) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	parent := in.NodeId
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	st := t.inner.ReadDirPlus(cancel, in, out)
	if st.Ok() {
		t.givePlus(out.Bytes(), parent)
	}
	return st
}

// READDIRPLUS entries: an EntryOut, then a dirent (ino, off, namelen, type)
// and the name, padded to 8 bytes.
const (
	entryOutSize = int(unsafe.Sizeof(fuse.EntryOut{}))
	direntSize   = 8 + 8 + 4 + 4
)

// givePlus rewrites, in place, the node ID of every entry of a READDIRPLUS
// reply into the kernel's.
func (t *kernelIDs) givePlus(buf []byte, parent uint64) {
	for pos := 0; pos+entryOutSize+direntSize <= len(buf); {
		nameLen := int(binary.NativeEndian.Uint32(buf[pos+entryOutSize+16:]))
		nameAt := pos + entryOutSize + direntSize
		if nameAt+nameLen > len(buf) {
			return
		}
		eo := (*fuse.EntryOut)(unsafe.Pointer(&buf[pos]))
		if eo.NodeId != 0 {
			name := string(buf[nameAt : nameAt+nameLen])
			if name != "." && name != ".." {
				eo.NodeId = t.give(eo.NodeId, parent, name)
			}
		}
		pos = nameAt + (nameLen+7)&^7
	}
}

func (t *kernelIDs) ReleaseDir(in *fuse.ReleaseIn) {
	fh, ok := t.fhIn(in.Fh)
	if !ok || t.in(nil, &in.InHeader) != fuse.OK {
		return
	}
	in.Fh = fh
	t.inner.ReleaseDir(in)
}

func (t *kernelIDs) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.FsyncDir(cancel, in)
}

func (t *kernelIDs) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if st := t.in(cancel, h); !st.Ok() {
		return st
	}
	return t.inner.StatFs(cancel, h, out)
}

func (t *kernelIDs) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	if st := t.in(cancel, &in.InHeader); !st.Ok() {
		return st
	}
	in.Fh, _ = t.fhIn(in.Fh)
	return t.inner.Statx(cancel, in, out)
}
