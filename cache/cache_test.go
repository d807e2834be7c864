package cache

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

const (
	layerA = digest.Digest("sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	layerB = digest.Digest("sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")
)

func TestNewRejectsBadSize(t *testing.T) {
	for _, size := range []int{0, -1} {
		if _, err := New(size); !errors.Is(err, ErrInvalidSize) {
			t.Errorf("New(%d) = %v, want ErrInvalidSize", size, err)
		}
	}
}

func TestGetAdd(t *testing.T) {
	c, err := New(8)
	if err != nil {
		t.Fatal(err)
	}
	file := Entry{Attr: Attr{Ino: 7, Size: 42, Mode: 0o100644}}
	c.Add(layerA, "etc/passwd", file)
	c.Add(layerA, "etc/missing", Entry{Negative: true})

	tests := []struct {
		name  string
		layer digest.Digest
		path  string
		want  Entry
		found bool
	}{
		{"positive", layerA, "etc/passwd", file, true},
		{"negative", layerA, "etc/missing", Entry{Negative: true}, true},
		{"other layer same path", layerB, "etc/passwd", Entry{}, false},
		{"absent", layerA, "etc/group", Entry{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := c.Get(tc.layer, tc.path)
			if ok != tc.found || got != tc.want {
				t.Errorf("Get(%s, %q) = %+v, %v; want %+v, %v", tc.layer, tc.path, got, ok, tc.want, tc.found)
			}
		})
	}
}

func TestBounded(t *testing.T) {
	c, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c.Add(layerA, fmt.Sprint(i), Entry{Negative: true})
	}
	held := 0
	for i := range 10 {
		if _, ok := c.Get(layerA, fmt.Sprint(i)); ok {
			held++
		}
	}
	if held != 4 {
		t.Fatalf("%d entries held, want 4", held)
	}
	if _, ok := c.Get(layerA, "0"); ok {
		t.Error("oldest entry survived eviction")
	}
	if _, ok := c.Get(layerA, "9"); !ok {
		t.Error("newest entry evicted")
	}
}

func TestConcurrent(t *testing.T) {
	c, err := New(64)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var bad [8]int
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				p := fmt.Sprint(i % 100)
				if e, ok := c.Get(layerA, p); ok {
					if e.Attr.Ino >= 8 {
						bad[g]++
					}
				} else {
					c.Add(layerA, p, Entry{Attr: Attr{Ino: uint64(g)}})
				}
			}
		}()
	}
	wg.Wait()
	for g, n := range bad {
		if n != 0 {
			t.Errorf("goroutine %d found %d entries nobody added", g, n)
		}
	}
}

func BenchmarkGetHit(b *testing.B) {
	c, err := New(DefaultSize)
	if err != nil {
		b.Fatal(err)
	}
	c.Add(layerA, "usr/lib/x86_64-linux-gnu/libc.so.6", Entry{})
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Get(layerA, "usr/lib/x86_64-linux-gnu/libc.so.6")
		}
	})
}
