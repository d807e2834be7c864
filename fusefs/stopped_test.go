//go:build linux

package fusefs

import "testing"

// TestStoppedListBounded: the list of lazily detached mounts whose server
// outlived the unmount holds only the servers still running, not every
// one there ever was until Close.
func TestStoppedListBounded(t *testing.T) {
	m := &Manager{}
	for range 100 {
		mt := &mount{done: make(chan struct{})}
		close(mt.done) // its last user left: the server has exited
		m.keepStopped(mt)
	}
	busy := &mount{done: make(chan struct{})}
	m.keepStopped(busy)
	if len(m.stopped) != 1 || m.stopped[0] != busy {
		t.Fatalf("%d detached mounts kept, want only the busy one", len(m.stopped))
	}
}
