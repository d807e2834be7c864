package main

import (
	"path/filepath"

	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/config"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/ducc"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fusefs"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/fuseremote"
	"github.com/cvmfs-contrib/cvmfs-fuse-snapshotter/snapshot"
)

var (
	_ snapshot.LayerFS = (*fusefs.Manager)(nil)
	_ snapshot.LayerFS = (*fuseremote.Supervisor)(nil)
)

// newManager builds the FUSE manager that serves every remote layer, with
// extra options after those of cfg. Prefetch takes profiles from records
// once they are open (records may be nil).
func newManager(cfg config.Config, repo *ducc.Repo, records *usageRecords, extra ...fusefs.Opt) (*fusefs.Manager, error) {
	opts, err := cfg.FusefsOpts()
	if err != nil {
		return nil, err
	}
	opts = append(opts, cfg.PrefetchOpts(prefetchProfiles(repo, records), []string{"/proc/self/exe", pageReaderName})...)
	return fusefs.NewManager(repo, append(opts, extra...)...)
}

// layerStateDir is where the FUSE manager keeps what it learns of layers
// (see fusefs.WithStateDir).
func layerStateDir(root string) string { return filepath.Join(root, "layers") }
