//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestServe: Serve records its pid while it serves, and a shutdown call
// ends it: it closes the Manager (unmounting everything), then removes its
// pid file and its socket.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	layer := digest.FromString("layer")
	m := &fakeManager{mounted: map[string]digest.Digest{"/elsewhere": layer}, present: layer}
	sock := filepath.Join(dir, "run", "fuse.sock")
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), m, root, sock) }()
	c := NewClient(sock)
	for c.Ping(context.Background()) != nil {
		select {
		case err := <-done:
			t.Fatalf("Serve = %v before serving", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	b, err := os.ReadFile(PIDFile(root))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid file while serving = %q, %v; want %d", b, err, os.Getpid())
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, %v; want mode 0600", fi, err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after a shutdown call = %v", err)
	}
	if len(m.mounted) != 0 {
		t.Errorf("the Manager was not closed: %v still mounted", m.mounted)
	}
	for _, p := range []string{PIDFile(root), sock} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after Serve: %v", p, err)
		}
	}
}
