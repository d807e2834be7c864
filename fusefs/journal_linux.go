//go:build linux

package fusefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// nodeJournal records, for every node ID a mount has given the kernel, the
// node ID of its parent and its name, so that a successor serving the same
// FUSE connection can find what each node ID the kernel still holds names
// (see kernelIDs). It lives in an anonymous memory file (memfd) that the
// daemon hands to its custody process with the connection: it survives the
// daemon, not the machine, exactly like the connection it describes.
//
// Records are written through a shared mapping of the file (no syscall on
// the lookup path), before the reply that gives their node ID to the
// kernel: the record's body first, then its length, which is what makes it
// count. A process killed in between leaves a zero length, which ends the
// journal for its readers; nothing after it was given to the kernel.
// Records, each starting at a multiple of 4 bytes:
//
//	u32 length of the record | u64 node ID | u64 parent node ID | name
//
// Node IDs are never reused for another path, so records are never
// removed: the journal grows with the distinct paths of the layer looked up
// through this mount, at most its size.
type nodeJournal struct {
	f *os.File

	mu  sync.Mutex
	mem []byte // the file mapped shared, len(mem) its size
	off int64
	err error // the first error; later records are not written
}

const journalHeader = 4 + 8 + 8

// maxJournalName bounds a recorded name (Linux names are at most 255 bytes;
// the bound only protects the reader from a corrupt length).
const maxJournalName = 4096

// journalGrowth is the least the journal's file grows by when full.
const journalGrowth = 256 << 10

// newNodeJournal returns an empty journal in a new memfd.
func newNodeJournal() (*nodeJournal, error) {
	fd, err := unix.MemfdCreate("cvmfs-layer-nodes", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create node journal: %w", err)
	}
	return &nodeJournal{f: os.NewFile(uintptr(fd), "node journal")}, nil
}

// nodeRecord is where a node ID was found: its parent's node ID and its name.
type nodeRecord struct {
	parent uint64
	name   string
}

// align4 rounds n up to a multiple of 4.
func align4(n int64) int64 { return (n + 3) &^ 3 }

// openNodeJournal reads the journal in f (which it takes over) and returns
// it ready for appending, with its records by node ID. Reading stops at the
// first record that is incomplete or malformed: anything after it was
// never given to the kernel.
func openNodeJournal(f *os.File) (*nodeJournal, map[uint64]nodeRecord, error) {
	recs := map[uint64]nodeRecord{}
	var off int64
	hdr := make([]byte, journalHeader)
	for {
		if _, err := f.ReadAt(hdr, off); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			f.Close()
			return nil, nil, fmt.Errorf("read node journal: %w", err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
		if n <= journalHeader || n > journalHeader+maxJournalName {
			break
		}
		name := make([]byte, n-journalHeader)
		if _, err := f.ReadAt(name, off+journalHeader); err != nil {
			break
		}
		id := binary.LittleEndian.Uint64(hdr[4:12])
		parent := binary.LittleEndian.Uint64(hdr[12:20])
		if id <= rootNodeID || parent == 0 {
			break
		}
		recs[id] = nodeRecord{parent: parent, name: string(name)}
		off += align4(n)
	}
	return &nodeJournal{f: f, off: off}, recs, nil
}

// add records that node ID id is name in parent. Safe for concurrent use.
func (j *nodeJournal) add(id, parent uint64, name string) error {
	if len(name) == 0 || len(name) > maxJournalName {
		return fmt.Errorf("node journal: name of %d bytes", len(name))
	}
	n := int64(journalHeader + len(name))
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if j.off+align4(n) > int64(len(j.mem)) {
		if err := j.grow(j.off + align4(n)); err != nil {
			j.err = err
			return err
		}
	}
	rec := j.mem[j.off : j.off+n]
	binary.LittleEndian.PutUint64(rec[4:12], id)
	binary.LittleEndian.PutUint64(rec[12:20], parent)
	copy(rec[journalHeader:], name)
	// The length last, in one store: it is what makes the record count.
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&rec[0])), uint32(n))
	j.off += align4(n)
	return nil
}

// grow makes the file, and its mapping, hold at least size bytes; j.mu is
// held.
func (j *nodeJournal) grow(size int64) error {
	fi, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("node journal: %w", err)
	}
	newSize := max(fi.Size(), int64(len(j.mem))*2, size+journalGrowth)
	newSize = (newSize + int64(os.Getpagesize()) - 1) &^ (int64(os.Getpagesize()) - 1)
	if err := j.f.Truncate(newSize); err != nil {
		return fmt.Errorf("grow node journal: %w", err)
	}
	mem, err := unix.Mmap(int(j.f.Fd()), 0, int(newSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map node journal: %w", err)
	}
	if j.mem != nil {
		unix.Munmap(j.mem)
	}
	j.mem = mem
	return nil
}

// dup returns a new descriptor of the journal's file, for the custody.
func (j *nodeJournal) dup() (*os.File, error) {
	fd, err := dupFile(j.f)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), "node journal"), nil
}

// Close unmaps the journal and closes its descriptor (the custody may hold
// another).
func (j *nodeJournal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.mem != nil {
		unix.Munmap(j.mem)
		j.mem = nil
		j.err = os.ErrClosed
	}
	return j.f.Close()
}
