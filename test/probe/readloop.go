package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// readLoop reads FILE every interval until killed, two ways, and prints
// one line per round:
//
//	seq=N open=RESULT held=RESULT
//
// open: open, read to the end, close (what a new reader sees); held: a
// pread at offset 0 on a descriptor opened at the start (what a reader
// that keeps its file open sees). RESULT is "ok" or the errno name
// (ENOTCONN, ESTALE, ...), or "error" for anything that is not an errno.
// A held descriptor that could not be opened is retried every round.
func readLoop(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: probe readloop MILLISECONDS FILE")
	}
	ms, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	name := args[1]
	held, _ := os.Open(name)
	buf := make([]byte, 4096)
	for seq := 0; ; seq++ {
		openRes := result(func() error { _, err := readAll(name); return err })
		if held == nil {
			held, _ = os.Open(name)
		}
		heldRes := "EBADF"
		if held != nil {
			heldRes = result(func() error {
				_, err := held.ReadAt(buf, 0)
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			})
		}
		fmt.Printf("seq=%d open=%s held=%s\n", seq, openRes, heldRes)
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
}

// result runs f and names its error.
func result(f func() error) string {
	err := f()
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
		return "errno" + strconv.Itoa(int(errno))
	}
	return "error"
}
