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
	c.AddNegative(layerA, "etc/missing")

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
	if c.Hits() != 2 || c.Misses() != 2 {
		t.Errorf("hits, misses = %d, %d; want 2, 2", c.Hits(), c.Misses())
	}
}

func TestBounded(t *testing.T) {
	c, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		c.AddNegative(layerA, fmt.Sprint(i))
	}
	if c.Len() != 4 {
		t.Fatalf("Len = %d, want 4", c.Len())
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
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				p := fmt.Sprint(i % 100)
				if _, ok := c.Get(layerA, p); !ok {
					c.Add(layerA, p, Entry{Attr: Attr{Ino: uint64(g)}})
				}
			}
		}()
	}
	wg.Wait()
	if got := c.Hits() + c.Misses(); got != 8000 {
		t.Errorf("hits+misses = %d, want 8000", got)
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
