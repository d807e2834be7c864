//go:build linux

package fuseremote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestStartBoundsServerLog: a FUSE server log grown past its bound is cut
// when the daemon starts: its tail kept in fuse-server.log.1, the log
// emptied, and a server still writing to it (O_APPEND) goes on at its
// new end. The tail starts at a line.
func TestStartBoundsServerLog(t *testing.T) {
	root := t.TempDir()
	logPath := filepath.Join(root, "fuse-server.log")
	w, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Truncate(maxLogSize); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("\nfirst kept line\nthe last line\n"); err != nil {
		t.Fatal(err)
	}
	rc, err := NewSupervisor(root, filepath.Join(root, "fuse-server.sock"), []string{"/nonexistent", "fuse-server"})
	if err != nil {
		t.Fatal(err)
	}
	rc.spawn = func(context.Context) (<-chan error, error) { return nil, errors.New("not in this test") }
	_ = rc.Start(context.Background())

	if _, err := w.WriteString("written after\n"); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(logPath); err != nil || string(b) != "written after\n" {
		t.Errorf("log after start: %d bytes (%.40q), %v; want only what was written since", len(b), b, err)
	}
	old, err := os.ReadFile(logPath + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(old) > maxLogSize/4 || string(old) != "first kept line\nthe last line\n" {
		t.Errorf("kept tail: %d bytes ending %q", len(old), old[max(0, len(old)-40):])
	}

	// A small log is left as it is.
	if err := os.WriteFile(logPath, []byte("small\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = rc.Start(context.Background())
	if b, _ := os.ReadFile(logPath); string(b) != "small\n" {
		t.Errorf("a small log was changed: %q", b)
	}
}
