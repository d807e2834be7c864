package main

import (
	"fmt"
	"time"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/cache"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usage"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/usagestore"
)

// The configuration reaches the packages here, and only here: one function
// per package maps the keys it owns to its options. The packages parse and
// check the values themselves.

// snapshotOpts maps the keys the snapshotter owns to its options.
func (c config) snapshotOpts() ([]snapshot.Opt, error) {
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

// fusefsOpts maps the FUSE keys to the options of a fusefs.Manager, with
// the attribute cache they size.
func (c config) fusefsOpts() ([]fusefs.Opt, error) {
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

// supervisorOpts maps the keys that bound calls to a separate FUSE server:
// Mount and Check get the lookup-timeout, other calls 5 s or the
// lookup-timeout if shorter.
func (c config) supervisorOpts() []fuseremote.SupervisorOpt {
	lookup := time.Duration(c.LookupTimeout)
	return []fuseremote.SupervisorOpt{
		fuseremote.WithClientOptions(fuseremote.WithTimeouts(lookup, min(lookup, fuseremote.DefaultCallTimeout))),
	}
}

// usagestoreOpts maps the keys of the usage records to the store's options.
func (c config) usagestoreOpts() []usagestore.Opt {
	return []usagestore.Opt{
		usagestore.WithFlushInterval(time.Duration(c.ProfileFlushInterval)),
		usagestore.WithProfileLimit(c.ProfileLimit),
	}
}
