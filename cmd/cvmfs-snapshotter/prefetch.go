package main

import (
	"context"
	"flag"
	"io"
	"os"
	"sync/atomic"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// usageRecords holds the usage records once they are open (after the FUSE
// manager is built).
type usageRecords = atomic.Pointer[usagestore.Store]

// prefetchProfiles returns what prefetch reads of a layer: the files this
// node's usage records saw workloads read (most bytes first), then those a
// profile published next to the layer in the repository names, each once.
func prefetchProfiles(repo *ducc.Repo, records *usageRecords) fusefs.ProfileSource {
	return func(ctx context.Context, layer digest.Digest) ([]string, error) {
		var out []string
		seen := map[string]bool{}
		add := func(p string) {
			if !seen[p] && len(out) < usage.MaxPublishedFiles {
				seen[p] = true
				out = append(out, p)
			}
		}
		if records != nil {
			if st := records.Load(); st != nil {
				if u, ok, err := st.Recorded(ctx, layer); err == nil && ok {
					for _, f := range u.Profile {
						add(f.Path)
					}
				}
			}
		}
		published, err := repo.PublishedProfile(ctx, layer)
		if err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).WithField("layer", layer).Warn("ignoring the layer's published access profile")
		}
		for _, p := range published {
			add(p)
		}
		return out, nil
	}
}

// pageReaderName is the subcommand that reads prefetched files through
// the layer mounts (fusefs.RunPageReader), started by the daemon.
const pageReaderName = "prefetch-reader"

// runPageReader runs the page reader on standard input and output.
func runPageReader(args []string, out io.Writer) error {
	var workers int
	fs := flag.NewFlagSet("cvmfs-snapshotter "+pageReaderName, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&workers, "workers", fusefs.DefaultPrefetchConcurrency, "files read at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return fusefs.RunPageReader(os.Stdin, os.Stdout, workers)
}
