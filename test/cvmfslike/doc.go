// Package cvmfslike serves a DUCC-shaped directory tree read-only through
// a FUSE filesystem that behaves, where it matters to a layer store's
// users, like a cvmfs2 client mount (see §6 of docs/DESIGN.md):
//
//   - mounted ro,nosuid,nodev,allow_other on its own FUSE connection,
//     without kernel passthrough (stack depth 0), so FUSE mounts and
//     overlays stack on it exactly as on a real client;
//   - every open is an OPEN round trip, and the page cache is kept across
//     opens (FOPEN_KEEP_CACHE); FLUSH is not implemented;
//   - everything in the tree is served as it is, .cvmfscatalog included;
//   - the client's magic extended attributes (user.fqrn, user.hash,
//     user.revision, ...) are readable by name on every path and listed
//     only at the repository root;
//   - the first open of each file can cost a delay (a cache miss fetched
//     over the network); an open during that fetch waits for it, later
//     opens cost none until the cache is wiped;
//   - owners as stored, or every file claimed by one uid/gid
//     (CVMFS_CLAIM_OWNERSHIP=yes with the client running as a user);
//   - inode numbers derive from paths, and catalog reloads: after Remove
//     and Reload, an fd opened before gets ENOENT on read and fstat,
//     lookups ENOENT, and a path added again gets the same inode number;
//   - faults: hanging or slow lookups, EIO on open or read, and a crashed
//     client (every request ENOTCONN).
//
// It is for tests and benchmarks only: production code never imports it,
// and it knows nothing of the snapshotter. The store serves from the
// process that mounts it: that process must not block the FUSE server
// (tests that read through our own layer filesystem over it are fine;
// both serve from goroutines).
package cvmfslike
