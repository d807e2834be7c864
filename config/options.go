package config

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// The configuration reaches the packages here, and only here: one method
// per package maps the keys it owns to its options. The packages parse and
// check the values themselves.

// SnapshotOpts maps the keys the snapshotter owns to its options.
func (c Config) SnapshotOpts() ([]snapshot.Opt, error) {
	ux, err := snapshot.ParseUserxattr(c.OverlayUserxattr)
	if err != nil {
		return nil, fmt.Errorf("overlay-userxattr: %w", err)
	}
	return []snapshot.Opt{
		snapshot.WithLookupTimeout(time.Duration(c.LookupTimeout)),
		snapshot.WithUserxattr(ux),
		snapshot.WithChainCheck(c.VerifyChain),
	}, nil
}

// FusefsOpts maps the FUSE keys to the options of a fusefs.Manager, with
// the attribute cache they size.
func (c Config) FusefsOpts() ([]fusefs.Opt, error) {
	acct, err := usage.ParseAccounting(c.Accounting)
	if err != nil {
		return nil, err
	}
	attrs, err := cache.New(c.AttrCacheSize)
	if err != nil {
		return nil, err
	}
	return []fusefs.Opt{
		fusefs.WithAccounting(acct),
		fusefs.WithTimeouts(time.Duration(c.EntryTimeout), time.Duration(c.AttrTimeout), time.Duration(c.NegativeTimeout)),
		fusefs.WithCache(attrs),
		fusefs.WithProfileLimit(c.ProfileLimit),
		// The daemon never opens files on its own mounts.
		fusefs.WithoutSelfAccess(),
	}, nil
}

// SupervisorOpts maps the keys that bound calls to a separate FUSE server:
// Mount and Check get the lookup-timeout, other calls 5 s or the
// lookup-timeout if shorter.
func (c Config) SupervisorOpts() []fuseremote.SupervisorOpt {
	lookup := time.Duration(c.LookupTimeout)
	return []fuseremote.SupervisorOpt{
		fuseremote.WithClientOptions(fuseremote.WithTimeouts(lookup, min(lookup, fuseremote.DefaultCallTimeout))),
	}
}

// UsagestoreOpts maps the keys of the usage records to the store's options.
func (c Config) UsagestoreOpts() []usagestore.Opt {
	return []usagestore.Opt{
		usagestore.WithFlushInterval(time.Duration(c.ProfileFlushInterval)),
		usagestore.WithProfileLimit(c.ProfileLimit),
	}
}

// PrefetchOpts maps the prefetch keys to the FUSE manager's prefetch
// options, reading the profiles src gives, and with prefetch-page-cache
// through the mounts by the helper that pageReader starts (its argv, to
// which the number of threads is added as "--workers N"); none when
// prefetch is off.
func (c Config) PrefetchOpts(src fusefs.ProfileSource, pageReader []string) []fusefs.Opt {
	if !c.Prefetch {
		return nil
	}
	opts := []fusefs.Opt{fusefs.WithPrefetch(src, c.PrefetchConcurrency, fusefs.DefaultPrefetchMaxBytes)}
	if c.PrefetchPageCache {
		argv := append(append([]string(nil), pageReader...), "--workers", strconv.Itoa(c.PrefetchConcurrency))
		opts = append(opts, fusefs.WithPrefetchPages(argv))
	}
	if c.PrefetchDirectories {
		opts = append(opts, fusefs.WithDirectoryPrefetch())
	}
	return opts
}

// manager builds a FUSE manager of c as the daemon does, prefetching
// nothing: Validate's check of the FUSE keys.
func (c Config) manager() (*fusefs.Manager, error) {
	opts, err := c.FusefsOpts()
	if err != nil {
		return nil, err
	}
	none := func(context.Context, digest.Digest) ([]string, error) { return nil, nil }
	return fusefs.NewManager(ducc.New(c.AbsoluteMountpoint), append(opts, c.PrefetchOpts(none, []string{"true"})...)...)
}
