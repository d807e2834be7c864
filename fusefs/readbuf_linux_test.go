package fusefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// TestReadBuffersResident: every buffer go-fuse reads a request into has
// all its pages resident when it is handed out, even one allocated after
// the runtime gave its free memory back to the kernel. (The kernel copies a
// request into a non-resident page by a path that fails, and fails the
// request with EIO, when the server is being killed.)
func TestReadBuffersResident(t *testing.T) {
	// The server never serves: its descriptor (a socket) stays go-fuse's,
	// closed with its file when the server is collected.
	server, _, _, err := startServer(context.Background(), fuse.NewDefaultRawFileSystem(), initRequest(t), &fuse.MountOptions{MaxWrite: smallMaxWrite})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := readPool(server)
	if err != nil {
		t.Fatalf("this go-fuse's read buffers cannot be reached: %v", err)
	}
	for i := range 20 {
		// Two collections empty a sync.Pool; FreeOSMemory gives the
		// freed pages back, so that the next buffer is allocated anew
		// from pages the process does not hold.
		runtime.GC()
		debug.FreeOSMemory()
		buf := pool.Get().([]byte)
		if missing := nonResident(t, buf); missing > 0 {
			t.Fatalf("buffer %d: %d of its pages are not resident", i, missing)
		}
	}
}

// nonResident counts the pages of buf that are not resident.
func nonResident(t *testing.T, buf []byte) int {
	t.Helper()
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&buf[0])) &^ (page - 1)
	end := uintptr(unsafe.Pointer(&buf[len(buf)-1])) + 1
	vec := make([]byte, (end-start+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, start, end-start, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		if v&1 == 0 {
			n++
		}
	}
	return n
}

// initRequest is an INIT as Linux 6.x sends it.
func initRequest(t *testing.T) []byte {
	t.Helper()
	in := fuse.InitIn{Major: 7, Minor: 41, MaxReadAhead: 128 << 10}
	in.Opcode = opInit
	in.Unique = 1
	in.Length = uint32(unsafe.Sizeof(in))
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, &in); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
