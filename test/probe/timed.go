package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/treediff"
)

// Timed subcommands print one line, `key=value` pairs ending with
// elapsed_ns: the time the work took inside the container, from the
// first syscall to the last, without process start or output.

// readAllTree opens and reads to the end every regular file at or below
// each root, in lexical order, and prints
//
//	files=N bytes=B elapsed_ns=T
func readAllTree(roots []string) error {
	if len(roots) == 0 {
		return fmt.Errorf("usage: probe readall DIR|FILE...")
	}
	buf := make([]byte, 1<<20)
	var files, total int64
	start := time.Now()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			n, err := readWith(p, buf)
			files++
			total += n
			return err
		})
		if err != nil {
			return err
		}
	}
	elapsed := time.Since(start)
	fmt.Printf("files=%d bytes=%d elapsed_ns=%d\n", files, total, elapsed.Nanoseconds())
	return nil
}

// readWith reads name to the end through buf and returns the bytes read.
func readWith(name string, buf []byte) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// walkSum does what `probe walk` does (lstat, xattrs, a SHA-256 of every
// regular file; mounts skipped) and prints only
//
//	entries=N elapsed_ns=T
func walkSum(root string) error {
	start := time.Now()
	entries, err := treediff.Walk(root)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("entries=%d elapsed_ns=%d\n", len(entries), elapsed.Nanoseconds())
	return nil
}
