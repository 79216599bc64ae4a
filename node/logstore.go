package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"go.etcd.io/bbolt"
)

// Log store kinds: where the Raft log and stable store live under
// DataDir/raft.
const (
	// LogStoreBolt is raft-boltdb (raft/raft.db): a bbolt B+tree. Each
	// append costs two fdatasyncs (the data pages, then the meta page).
	LogStoreBolt = "bolt"
	// LogStoreWAL is hashicorp/raft-wal (raft/wal/): append-only segment
	// files and a small bbolt file for the stable store and the segment
	// list. Each append costs one fdatasync.
	LogStoreWAL = "wal"
)

// ErrLogStoreMismatch means the data directory holds a log of a different
// kind than the one asked for (or of both kinds). Opening the asked kind
// anyway would start from an empty log and forget the node's term, vote
// and acknowledged entries.
var ErrLogStoreMismatch = errors.New("log store kind does not match the data directory")

const (
	boltFile = "raft.db"
	walDir   = "wal"
	// walSegmentSize is the size of each preallocated raft-wal segment.
	// Smaller than raft-wal's 64 MiB default: boards keep a short log
	// (deploy/config), and a segment is only removed once every entry in it
	// is behind the last snapshot's trailing logs.
	walSegmentSize = 16 << 20
	// lockWait is how long opening a store waits for another process
	// holding it (a running node) before failing.
	lockWait = 2 * time.Second
)

// logStores is an open Raft log and stable store of one kind.
type logStores struct {
	kind   string
	log    raft.LogStore
	stable raft.StableStore
	closer io.Closer
	closed bool
}

// Close closes the stores once; later calls return nil. Not safe for
// concurrent use.
func (s *logStores) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.closer.Close()
}

// logStorePath is where a store of kind lives under the raft directory.
func logStorePath(raftDir, kind string) string {
	if kind == LogStoreWAL {
		return filepath.Join(raftDir, walDir)
	}
	return filepath.Join(raftDir, boltFile)
}

// DetectLogStore reports which kind of log store raftDir holds: "" when
// none, an error wrapping ErrLogStoreMismatch when both.
func DetectLogStore(raftDir string) (string, error) {
	var found []string
	for _, kind := range []string{LogStoreBolt, LogStoreWAL} {
		_, err := os.Stat(logStorePath(raftDir, kind))
		switch {
		case err == nil:
			found = append(found, kind)
		case !errors.Is(err, os.ErrNotExist):
			return "", fmt.Errorf("stat log store: %w", err)
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	default:
		return "", fmt.Errorf("%w: %s holds both %s and %s/; remove the one that is not current (kvnode migrate-log leaves only one)",
			ErrLogStoreMismatch, raftDir, boltFile, walDir)
	}
}

// openLogStores opens (creating when absent) the log store of kind in
// raftDir. It refuses a directory that holds the other kind, and fails
// after lockWait when another process holds the store.
func openLogStores(raftDir, kind string, logger hclog.Logger) (*logStores, error) {
	if kind == "" {
		kind = LogStoreBolt
	}
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir %s: %w", raftDir, err)
	}
	found, err := DetectLogStore(raftDir)
	if err != nil {
		return nil, err
	}
	if found != "" && found != kind {
		return nil, fmt.Errorf("%w: %s holds a %s log but --log-store is %s; run kvnode migrate-log --to %s on the stopped node, or start it with --log-store %s",
			ErrLogStoreMismatch, raftDir, found, kind, kind, found)
	}
	switch kind {
	case LogStoreBolt:
		return openBoltAt(filepath.Join(raftDir, boltFile))
	case LogStoreWAL:
		return openWALAt(filepath.Join(raftDir, walDir), logger)
	default:
		return nil, fmt.Errorf("%w: log store %q is not %s or %s", ErrBadConfig, kind, LogStoreBolt, LogStoreWAL)
	}
}

func openBoltAt(path string) (*logStores, error) {
	bs, err := raftboltdb.New(raftboltdb.Options{
		Path: path,
		// The freelist is rebuilt on open instead of written on every
		// commit: fewer writes to SD cards and a smaller raft.db. NoSync and
		// NoGrowSync stay off: the first would acknowledge entries that are
		// not on disk, the second is unsafe on ext4 (bbolt's own warning),
		// the file system of our users' boards.
		BoltOptions: &bbolt.Options{Timeout: lockWait, NoFreelistSync: true},
	})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s (is another kvnode using it?): %w", path, err)
	}
	return &logStores{kind: LogStoreBolt, log: bs, stable: bs, closer: bs}, nil
}

func openWALAt(dir string, logger hclog.Logger) (*logStores, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create wal dir %s: %w", dir, err)
	}
	// raft-wal opens its meta database without a lock timeout, so a second
	// process would hang on it: check first.
	if err := probeFlock(filepath.Join(dir, "wal-meta.db"), lockWait); err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	w, err := wal.Open(dir, wal.WithLogger(logger.Named("wal")), wal.WithSegmentSize(walSegmentSize))
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", dir, err)
	}
	return &logStores{kind: LogStoreWAL, log: walLog{w}, stable: w, closer: w}, nil
}

// walLog is raft-wal held to raft's LogStore contract below the first
// index. After a head truncation (compaction after a snapshot) raft-wal
// keeps serving the removed entries until their whole segment is dropped;
// a leader would then feed a lagging follower from those instead of
// sending it a snapshot, which raft-boltdb (and raft's own contract: the
// range was deleted) never does. The entries are committed and unchanged,
// so this is about behaving like the default store everywhere, including
// the snapshot catch-up path the fault tests exercise. IsMonotonic and the
// rest come from the embedded *wal.WAL.
type walLog struct{ *wal.WAL }

// GetLog answers raft.ErrLogNotFound below the first index.
func (w walLog) GetLog(index uint64, l *raft.Log) error {
	first, err := w.WAL.FirstIndex()
	if err != nil {
		return err
	}
	if index < first {
		return raft.ErrLogNotFound
	}
	return w.WAL.GetLog(index, l)
}

// probeFlock fails when another process holds an exclusive flock on path
// for longer than wait; a missing file is free. It releases the lock it
// takes, so it narrows rather than closes the window in which a second
// process could open the store.
func probeFlock(path string, wait time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is locked by another process (is the node still running?)", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
