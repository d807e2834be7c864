//go:build linux

package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// TestConcurrentAccess walks, stats and reads one layer through two mounts
// from many goroutines at once (run it with -race, and GOMAXPROCS=1 to catch
// self-deadlocks), while a third mount of the digest comes and goes.
func TestConcurrentAccess(t *testing.T) {
	requireFUSE(t)
	src := t.TempDir()
	for i := range 200 {
		writeFile(t, src, filepath.Join("d"+strconv.Itoa(i%10), "f"+strconv.Itoa(i)), strconv.Itoa(i))
	}
	writeFile(t, src, ".wh.gone", "")
	for _, mode := range []Accounting{AccountReads, AccountOpen, AccountBytes} {
		t.Run(mode.String(), func(t *testing.T) {
			m, mp1, layer := mountLayer(t, src, WithAccounting(mode))
			mp2 := newDir(t, filepath.Dir(mp1), "second")
			mp3 := newDir(t, filepath.Dir(mp1), "third")
			ctx := context.Background()
			if err := m.Mount(ctx, mp2, layer); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					mp := []string{mp1, mp2}[g%2]
					for i := g; i < 200; i += 3 {
						p := filepath.Join(mp, "d"+strconv.Itoa(i%10), "f"+strconv.Itoa(i))
						b, err := os.ReadFile(p)
						if err != nil || string(b) != strconv.Itoa(i) {
							errs <- err
							return
						}
						if _, err := os.ReadDir(filepath.Dir(p)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 5 {
					if err := m.Mount(ctx, mp3, layer); err != nil {
						errs <- err
						return
					}
					_ = statsOf(t, m)
					if err := m.Unmount(ctx, mp3); err != nil {
						errs <- err
						return
					}
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			s := statsOf(t, m)[0]
			if s.Opens < 200 || s.UniqueFiles != 200 || s.Panics != 0 {
				t.Errorf("opens %d unique %d panics %d", s.Opens, s.UniqueFiles, s.Panics)
			}
		})
	}
}

func TestOpenIgnoresNoatime(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "f", "f")
	root, _ := newTestRoot(t, dir)
	f, _ := lookupPath(t, root, "f")
	fh, _, errno := f.Open(context.Background(), syscall.O_RDONLY|syscall.O_NOATIME)
	if errno != 0 {
		t.Fatalf("open with O_NOATIME: %v", errno)
	}
	fh.(*file).Release(context.Background())
}
