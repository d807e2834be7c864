package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots/storage"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	bolt "go.etcd.io/bbolt"
)

// Snapshot directories are tied to the metadata database that created
// them. Cleanup removes only directories it can prove it made: a database
// that is new (metadata.db deleted, replaced, or lost) knows none of the
// directories already on disk, and some of those may be the upper dirs of
// containers that are still running.
//
// The proof is a random id kept in the database itself (in a bucket of its
// own, beside containerd's storage schema) and copied into a stamp file in
// every snapshot directory when it is created. A database that is replaced
// comes with a different id, or none, so directories of an earlier database
// never match.
const (
	ownerBucket = "cvmfs-snapshotter"
	ownerKey    = "db-id"
	// stampFile sits in each snapshot directory, beside fs and work.
	stampFile = "db-id"
	// tempPrefix names snapshot directories being created: they never
	// reached a caller, so Cleanup may always remove them.
	tempPrefix = "new-"
	// dbLockTimeout bounds the wait for another process holding the
	// database (a second daemon on the same root).
	dbLockTimeout = 10 * time.Second
)

// loadOwnerID returns the id recorded in the bolt database at path,
// creating the database and the id if needed. It runs before the MetaStore
// first opens the file (the MetaStore opens it lazily, and bolt's file lock
// would make a second handle wait).
func loadOwnerID(path string) (string, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: dbLockTimeout})
	if err != nil {
		return "", fmt.Errorf("open metadata %s: %w", path, err)
	}
	var id string
	err = db.Update(func(tx *bolt.Tx) error {
		bkt, err := tx.CreateBucketIfNotExists([]byte(ownerBucket))
		if err != nil {
			return err
		}
		if v := bkt.Get([]byte(ownerKey)); len(v) > 0 {
			id = string(v)
			return nil
		}
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		id = hex.EncodeToString(b)
		return bkt.Put([]byte(ownerKey), []byte(id))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("metadata id in %s: %w", path, err)
	}
	return id, nil
}

// stamp marks dir as created by this snapshotter's database.
func (s *snapshotter) stamp(dir string) error {
	return os.WriteFile(filepath.Join(dir, stampFile), []byte(s.ownerID+"\n"), 0o600)
}

// owns reports whether the snapshot directory name was created by this
// snapshotter's database (or is a temporary directory of a creation that
// never completed).
func (s *snapshotter) owns(name string) bool {
	if strings.HasPrefix(name, tempPrefix) {
		return true
	}
	b, err := os.ReadFile(filepath.Join(s.root, "snapshots", name, stampFile))
	return err == nil && strings.TrimSpace(string(b)) == s.ownerID
}

// adoptKnownDirs stamps the directories of every snapshot the database
// records, so that those made before stamps existed (or whose stamp was
// lost) can still be cleaned up once their snapshot is removed. A
// directory the database records is its own, whoever made it.
func (s *snapshotter) adoptKnownDirs(ctx context.Context) error {
	var ids map[string]string
	err := s.ms.WithTransaction(ctx, false, func(ctx context.Context) (err error) {
		ids, err = storage.IDMap(ctx)
		if errdefs.IsNotFound(err) { // a new, empty store
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for id := range ids {
		dir := s.snapshotDir(id)
		if s.owns(id) {
			continue
		}
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := s.stamp(dir); err != nil {
			log.G(ctx).WithError(err).WithField("path", dir).Warn("failed to stamp a snapshot directory")
		}
	}
	return nil
}

// moveAside renames a snapshot directory that this database did not
// create out of the way of a new snapshot with the same id. Nothing in it
// is deleted, and mounts that use it (a running container's overlay) keep
// working: the kernel holds them by reference, not by path.
func (s *snapshotter) moveAside(ctx context.Context, id string) error {
	from := s.snapshotDir(id)
	to := filepath.Join(s.root, "snapshots", fmt.Sprintf("foreign-%s-%d", id, time.Now().UnixNano()))
	if err := os.Rename(from, to); err != nil {
		return err
	}
	log.G(ctx).WithField("path", from).WithField("moved-to", to).
		Warn("a snapshot directory this metadata database did not create was in the way of a new snapshot; moved aside, not deleted")
	return nil
}
