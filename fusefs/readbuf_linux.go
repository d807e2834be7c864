package fusefs

import (
	"errors"
	"os"
	"reflect"
	"sync"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// A request the kernel hands to a server is lost if the server's process is
// killed while the kernel copies it into the server's read buffer: the
// kernel takes the request off its queue, pins the buffer's pages to copy
// into them, and if that fails the request ends with EIO (fs/fuse/dev.c,
// fuse_dev_do_read). Pinning a page that is resident and writable takes the
// lockless path (get_user_pages_fast), which never fails for a pending
// SIGKILL; pinning any other page (never touched since the Go runtime took
// it from the kernel, or given back since) takes the slow path, which stops
// at a pending fatal signal. So a kill -9 of the daemon, or an OOM kill,
// cost a reader an EIO whenever it landed during such a copy: measured, 3 in
// 1,200 kills under 8 readers, and 10 in 100 with the buffers' pages dropped
// before every read. No request is lost that way when every buffer the
// server reads into has its pages resident from the start, and Go never
// gives the pages of a buffer in use back to the kernel.
//
// go-fuse allocates its read buffers in Server's unexported readPool and has
// no option for it, so prefaultReadBuffers wraps the pool's New (through
// reflection, checked: a go-fuse that renames the field makes it return an
// error, and a unit test fail) to write one byte in every page of each new
// buffer. It must run before Serve, when no goroutine reads the pool.
func prefaultReadBuffers(s *fuse.Server) error {
	pool, err := readPool(s)
	if err != nil {
		return err
	}
	alloc := pool.New
	if alloc == nil {
		return errors.New("go-fuse's read buffer pool has no allocator")
	}
	pool.New = func() any {
		b := alloc()
		if buf, ok := b.([]byte); ok {
			touchPages(buf)
		}
		return b
	}
	// The buffer INIT was read into is back in the pool, touched only where
	// INIT was written.
	if buf, ok := pool.Get().([]byte); ok {
		touchPages(buf)
		pool.Put(buf)
	}
	return nil
}

// readPool returns go-fuse's pool of read buffers of s.
func readPool(s *fuse.Server) (*sync.Pool, error) {
	f := reflect.ValueOf(s).Elem().FieldByName("readPool")
	if !f.IsValid() || f.Type() != reflect.TypeFor[sync.Pool]() {
		return nil, errors.New("go-fuse's Server has no readPool of type sync.Pool")
	}
	return (*sync.Pool)(unsafe.Pointer(f.UnsafeAddr())), nil
}

// touchPages writes a zero in every page buf spans, so that each is
// resident and writable.
func touchPages(buf []byte) {
	if len(buf) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&buf[0]))
	for off := uintptr(0); off < uintptr(len(buf)); off += page - (start+off)%page {
		buf[off] = 0
	}
}
