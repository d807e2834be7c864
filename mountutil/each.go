package mountutil

import (
	"context"
	"errors"
	"sync"
)

// UnmountEach calls unmount for every mountpoint, all at once, waits for
// them all and returns their errors joined. In parallel because a busy
// mount can wait a while for its server, and a node with many layers in use
// must still stop within its service manager's stop timeout.
func UnmountEach(ctx context.Context, mountpoints []string, unmount func(ctx context.Context, mountpoint string) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, mp := range mountpoints {
		wg.Go(func() {
			if err := unmount(ctx, mp); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
