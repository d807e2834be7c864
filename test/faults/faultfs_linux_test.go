//go:build linux

package faults

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/mountutil"
)

// faults are the switches of a faultfs; the zero value injects nothing.
type faults struct {
	// hang makes lookups of names containing it block until release is
	// closed, as a stuck CVMFS client does.
	hang    atomic.Pointer[string]
	release chan struct{}
	// eioOpen and eioRead make opens, or reads, of regular files whose path
	// contains them fail with EIO.
	eioOpen, eioRead atomic.Pointer[string]
}

func matches(p *atomic.Pointer[string], path string) bool {
	s := p.Load()
	return s != nil && strings.Contains(path, *s)
}

// faultNode is a loopback node that consults the switches.
type faultNode struct {
	*fs.LoopbackNode
	f *faults
}

var (
	_ = (fs.NodeWrapChilder)((*faultNode)(nil))
	_ = (fs.NodeLookuper)((*faultNode)(nil))
	_ = (fs.NodeOpener)((*faultNode)(nil))
)

func (n *faultNode) WrapChild(ctx context.Context, ops fs.InodeEmbedder) fs.InodeEmbedder {
	return &faultNode{LoopbackNode: ops.(*fs.LoopbackNode), f: n.f}
}

func (n *faultNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if matches(&n.f.hang, n.Path(nil)+"/"+name) {
		select {
		case <-n.f.release:
		case <-ctx.Done():
			return nil, syscall.EINTR
		}
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

func (n *faultNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	path := n.Path(nil)
	if matches(&n.f.eioOpen, path) {
		return nil, 0, syscall.EIO
	}
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	if errno != 0 || !matches(&n.f.eioRead, path) {
		return fh, fl, errno
	}
	fh.(fs.FileReleaser).Release(ctx)
	return eioFile{}, fuse.FOPEN_DIRECT_IO, 0
}

// eioFile fails every read; it offers no passthrough fd, so reads reach
// this server.
type eioFile struct{}

var _ = (fs.FileReader)(eioFile{})

func (eioFile) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return nil, syscall.EIO
}

// mountFaultFS serves dir at mountpoint through a faultfs and returns its
// switches. It is unmounted at the end of the test.
func mountFaultFS(t *testing.T, dir, mountpoint string) *faults {
	t.Helper()
	root, err := fs.NewLoopbackRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &faults{release: make(chan struct{})}
	node := &faultNode{LoopbackNode: root.(*fs.LoopbackNode), f: f}
	root.(*fs.LoopbackNode).RootData.RootNode = node
	var zero time.Duration // no kernel caching: a fault applies at once
	opts := &fs.Options{
		EntryTimeout:    &zero,
		AttrTimeout:     &zero,
		NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			AllowOther:           true,
			FsName:               "faultfs",
			Name:                 "faultfs",
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
		},
	}
	srv, err := fuse.NewServer(noFlush{fs.NewNodeFS(node, opts)}, mountpoint, &opts.MountOptions)
	if err != nil {
		t.Fatalf("mount faultfs: %v", err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		t.Fatalf("mount faultfs: %v", err)
	}
	// One close through the mount while it is served teaches the kernel
	// that this filesystem has no FLUSH (see noFlush).
	probe := filepath.Join(dir, ".flush-probe")
	if err := os.WriteFile(probe, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if fh, err := os.Open(filepath.Join(mountpoint, ".flush-probe")); err == nil {
		fh.Close()
	}
	os.Remove(probe)
	t.Cleanup(func() {
		select {
		case <-f.release:
		default:
			close(f.release)
		}
		if err := srv.Unmount(); err != nil {
			_ = mountutil.Unmount(mountpoint)
		}
	})
	return f
}

// noFlush answers FLUSH with ENOSYS, after which the kernel never sends it
// again. The faultfs is served by the test process itself, and the layer
// filesystem under test keeps backing descriptors open on it (a lazily
// detached mount may leave some until exit); closing them at process exit
// would otherwise send a FLUSH that no server thread is left to answer,
// and the process could never exit.
type noFlush struct{ fuse.RawFileSystem }

func (noFlush) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status { return fuse.ENOSYS }
