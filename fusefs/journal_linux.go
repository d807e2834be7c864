//go:build linux

package fusefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// nodeJournal records, for every node ID a mount has given the kernel, the
// node ID of its parent and its name, so that a successor serving the same
// FUSE connection can find what each node ID the kernel still holds names
// (see kernelIDs). It lives in an anonymous memory file (memfd) that the
// daemon hands to its custody process with the connection: it survives the
// daemon, not the machine, exactly like the connection it describes.
//
// A record is written with one pwrite before the reply that gives its node
// ID to the kernel, so every node ID the kernel knows has its record; a
// process killed in the middle of a pwrite to memory completes it first (a
// signal is taken at the syscall's return). Records:
//
//	u32 length of the whole record | u64 node ID | u64 parent node ID | name
//
// A zero length ends the journal. Node IDs are never reused for another
// path, so records are never removed: the journal grows with the distinct
// paths of the layer looked up through this mount, at most its size.
type nodeJournal struct {
	f *os.File

	mu  sync.Mutex
	off int64
	err error // the first write error; later records are not written
}

const journalHeader = 4 + 8 + 8

// maxJournalName bounds a recorded name (Linux names are at most 255 bytes;
// the bound only protects the reader from a corrupt length).
const maxJournalName = 4096

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
		off += n
	}
	return &nodeJournal{f: f, off: off}, recs, nil
}

// add records that node ID id is name in parent. Safe for concurrent use.
func (j *nodeJournal) add(id, parent uint64, name string) error {
	if len(name) == 0 || len(name) > maxJournalName {
		return fmt.Errorf("node journal: name of %d bytes", len(name))
	}
	rec := make([]byte, journalHeader+len(name))
	binary.LittleEndian.PutUint32(rec[0:4], uint32(len(rec)))
	binary.LittleEndian.PutUint64(rec[4:12], id)
	binary.LittleEndian.PutUint64(rec[12:20], parent)
	copy(rec[journalHeader:], name)
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		j.err = fmt.Errorf("write node journal: %w", err)
		return j.err
	}
	j.off += int64(len(rec))
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

// Close closes the journal's descriptor (the custody may hold another).
func (j *nodeJournal) Close() error { return j.f.Close() }
