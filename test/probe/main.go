package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/treediff"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: probe walk|walksum|readall|cat|write|echo|sleep|readloop|emit ...")
	}
	switch args[0] {
	case "walk":
		return walk(args[1])
	case "cat":
		var total int64
		for _, f := range args[1:] {
			n, err := readAll(f)
			if err != nil {
				return err
			}
			total += n
		}
		fmt.Printf("read %d files, %d bytes\n", len(args)-1, total)
		return nil
	case "write":
		for i := 1; i+1 < len(args); i += 2 {
			if err := os.WriteFile(args[i], []byte(args[i+1]), 0o644); err != nil {
				return err
			}
		}
		return nil
	case "sleep":
		d, err := time.ParseDuration(args[1] + "s")
		if err != nil {
			return err
		}
		time.Sleep(d)
		return nil
	case "echo":
		fmt.Println(strings.Join(args[1:], " "))
		return nil
	case "readloop":
		return readLoop(args[1:])
	case "emit":
		return emit(args[1:])
	case "readall":
		return readAllTree(args[1:])
	case "walksum":
		if len(args) != 2 {
			return fmt.Errorf("usage: probe walksum DIR")
		}
		return walkSum(args[1])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func readAll(name string) (int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(io.Discard, f)
}

func walk(root string) error {
	entries, err := treediff.Walk(root)
	if err != nil {
		return err
	}
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return out.Flush()
}
