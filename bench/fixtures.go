package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/harness"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/test/testutil"
)

// Paths inside the benchmark images.
const (
	smallRoot = "/data" // /data/lNN/f-NNNN: the small files, one directory per layer
	bigPath   = "/big/file"
)

// fixtures are the three benchmark images, built once and pushed into the
// registry of every environment.
type fixtures struct {
	small, big, pull v1.Image
}

// fill writes pseudo-random bytes (xorshift64) into b: content that does
// not compress, so that no layer is cheaper than its size, and that is
// distinct for every seed.
func fill(b []byte, seed uint64) {
	x := seed*0x9e3779b97f4a7c15 | 1
	var w [8]byte
	for i := 0; i < len(b); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(w[:], x)
		copy(b[i:], w[:])
	}
}

// filesLayer is a gzip layer with dir/ and n files dir/f-NNNN of size
// bytes each, seeded by seed.
func filesLayer(parent, dir string, n, size int, seed uint64) ([]byte, error) {
	es := []testutil.Entry{testutil.Dir(parent), testutil.Dir(parent + "/" + dir)}
	for i := range n {
		f := testutil.File(fmt.Sprintf("%s/%s/f-%04d", parent, dir, i), "")
		f.Body = make([]byte, size)
		fill(f.Body, seed<<20+uint64(i))
		f.Size = int64(size)
		es = append(es, f)
	}
	return testutil.Layer(es)
}

// buildImages builds the images of cfg above a base layer holding probe,
// compressing layers on every CPU.
func buildImages(ctx context.Context, cfg config, probe []byte) (fixtures, error) {
	base := harness.BaseLayer(probe)
	small := make([][]byte, cfg.layers)
	pull := make([][]byte, cfg.pullLayers)
	var big []byte
	var jobs []func() error
	for i := range small {
		jobs = append(jobs, func() (err error) {
			small[i], err = filesLayer("data", fmt.Sprintf("l%02d", i), cfg.files, cfg.fileSize, uint64(i+1))
			return err
		})
	}
	perLayer := cfg.pullFiles()
	for i := range pull {
		jobs = append(jobs, func() (err error) {
			pull[i], err = filesLayer("pull", fmt.Sprintf("l%02d", i), perLayer, pullFileSize, uint64(1000+i))
			return err
		})
	}
	jobs = append(jobs, func() (err error) {
		f := testutil.File(bigPath[1:], "")
		f.Body = make([]byte, cfg.bigSize)
		fill(f.Body, 7)
		f.Size = cfg.bigSize
		big, err = testutil.Layer([]testutil.Entry{testutil.Dir("big"), f})
		return err
	})
	if err := parallel(ctx, jobs); err != nil {
		return fixtures{}, err
	}
	var im fixtures
	var err error
	if im.small, err = harness.Image(append([][]byte{base}, small...)...); err != nil {
		return im, err
	}
	if im.big, err = harness.Image(base, big); err != nil {
		return im, err
	}
	im.pull, err = harness.Image(append([][]byte{base}, pull...)...)
	return im, err
}

// pullFileSize is the size of each file of the pull image.
const pullFileSize = 256 << 10

// parallel runs jobs on at most GOMAXPROCS goroutines and returns the
// first error.
func parallel(ctx context.Context, jobs []func() error) error {
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, job := range jobs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := job(); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// tinyLayer is a gzip layer holding one small file whose name and content
// are unique to i.
func tinyLayer(i int) []byte {
	return testutil.MustLayer(testutil.Dir("t"), testutil.File(fmt.Sprintf("t/layer-%05d", i), fmt.Sprintf("layer %d\n", i)))
}
