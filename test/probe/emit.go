package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/pattern"
)

// emit writes the first N bytes of pattern.Reader to stdout and the
// first M to stderr, interleaved, so a test can check that a container's
// output arrives whole whatever its size.
func emit(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: probe emit STDOUT-BYTES STDERR-BYTES")
	}
	var n [2]int64
	for i, a := range args {
		v, err := strconv.ParseInt(a, 10, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("emit: bad byte count %q", a)
		}
		n[i] = v
	}
	outs := [2]*bufio.Writer{bufio.NewWriter(os.Stdout), bufio.NewWriter(os.Stderr)}
	srcs := [2]io.Reader{pattern.Reader(n[0]), pattern.Reader(n[1])}
	buf := make([]byte, 16<<10)
	for done := 0; done < 2; {
		done = 0
		for i := range outs {
			k, err := srcs[i].Read(buf)
			if k > 0 {
				if _, werr := outs[i].Write(buf[:k]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				done++
			} else if err != nil {
				return err
			}
		}
	}
	for _, w := range outs {
		if err := w.Flush(); err != nil {
			return err
		}
	}
	return nil
}
