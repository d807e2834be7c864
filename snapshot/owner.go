package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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
// creating the database and the id if needed, and the highest snapshot id
// the database has handed out (ok false if it cannot tell). It runs before
// the MetaStore first opens the file (the MetaStore opens it lazily, and
// bolt's file lock would make a second handle wait).
func loadOwnerID(path string) (id string, issued uint64, ok bool, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: dbLockTimeout})
	if err != nil {
		return "", 0, false, fmt.Errorf("open metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		// containerd's storage numbers snapshots with the sequence of its
		// v1/snapshots bucket (core/snapshots/storage/bolt.go).
		if v1 := tx.Bucket([]byte("v1")); v1 != nil {
			if bkt := v1.Bucket([]byte("snapshots")); bkt != nil {
				issued, ok = bkt.Sequence(), true
			}
		}
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
		return "", 0, false, fmt.Errorf("metadata id in %s: %w", path, err)
	}
	return id, issued, ok, nil
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
	if !isID(name) {
		// Set aside (moveAside, setAsideNewer): kept whatever its stamp.
		return false
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

// isID reports whether name is a snapshot id as containerd's storage
// hands them out: a decimal number.
func isID(name string) bool {
	_, err := strconv.ParseUint(name, 10, 64)
	return err == nil
}

// setAsideNewer moves out of the way the directories this database made
// whose id is above every id it has handed out (issued, ok from
// loadOwnerID). Only an older copy of the database put back explains them:
// they hold snapshots made since that copy, maybe the upper dirs of running
// containers, and the database will hand their ids out again (a new
// snapshot would then clear the directory as a crash's leftover). They are
// renamed, never deleted or unmounted (mounts follow the rename), and
// logged at Error for an operator to decide.
func (s *snapshotter) setAsideNewer(ctx context.Context, issued uint64, ok bool) error {
	if !ok {
		return nil
	}
	dir := filepath.Join(s.root, "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || n <= issued || !e.IsDir() || !s.owns(e.Name()) {
			continue
		}
		from := s.snapshotDir(e.Name())
		to := filepath.Join(dir, fmt.Sprintf("newer-%s-%d", e.Name(), time.Now().UnixNano()))
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("set aside %s, newer than the metadata database: %w", from, err)
		}
		log.G(ctx).WithField("path", from).WithField("moved-to", to).WithField("issued", issued).
			Error("snapshot directory newer than the metadata database (an older metadata.db put back?): moved aside, not deleted; remove it by hand once no container uses it")
	}
	return nil
}
