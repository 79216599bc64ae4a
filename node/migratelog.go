package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// ErrNothingToMigrate means MigrateLogStore found no log store in the data
// directory, or one of the kind asked for already.
var ErrNothingToMigrate = errors.New("nothing to migrate")

// stableKeys are the keys hashicorp/raft keeps in its stable store: the
// current term and the last vote (term and candidate).
var (
	stableUintKeys  = [][]byte{[]byte("CurrentTerm"), []byte("LastVoteTerm")}
	stableBytesKeys = [][]byte{[]byte("LastVoteCand")}
)

// MigrateResult describes a finished migration.
type MigrateResult struct {
	From, To    string
	First, Last uint64 // the log indexes copied (0, 0: an empty log)
	Old         string // where the previous store was moved
}

// MigrateLogStore copies the Raft log and stable store under
// dataDir/raft into a new store of kind to, checks the copy entry by entry,
// moves it into place and moves the old store aside (to raft.db.old or
// wal.old). Snapshots are not touched. It must run while the node is
// stopped; a running node holds its store's lock and the migration fails.
//
// Crash safety: the new store is written under a temporary name and renamed
// into place before the old one is moved aside. A crash between the two
// renames leaves both stores, which Open refuses to choose between (and
// says so); the old one is then the one to remove.
func MigrateLogStore(dataDir, to string, logger hclog.Logger) (*MigrateResult, error) {
	if to != LogStoreBolt && to != LogStoreWAL {
		return nil, fmt.Errorf("%w: log store %q is not %s or %s", ErrBadConfig, to, LogStoreBolt, LogStoreWAL)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	raftDir := filepath.Join(dataDir, "raft")
	from, err := DetectLogStore(raftDir)
	if err != nil {
		return nil, err
	}
	switch from {
	case "":
		return nil, fmt.Errorf("%w: no raft log in %s", ErrNothingToMigrate, raftDir)
	case to:
		return nil, fmt.Errorf("%w: %s already holds a %s log", ErrNothingToMigrate, raftDir, to)
	}
	src, err := openLogStores(raftDir, from, logger)
	if err != nil {
		return nil, err
	}
	defer src.Close()

	final := logStorePath(raftDir, to)
	tmp := final + ".migrating"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("remove an earlier unfinished migration %s: %w", tmp, err)
	}
	var dst *logStores
	if to == LogStoreWAL {
		dst, err = openWALAt(tmp, logger)
	} else {
		dst, err = openBoltAt(tmp)
	}
	if err != nil {
		return nil, err
	}
	res, err := copyStores(dst, src)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the new log: %w", cerr)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	res.From, res.To = from, to

	if err := os.Rename(tmp, final); err != nil {
		return nil, fmt.Errorf("move the new log into place: %w", err)
	}
	if err := syncDir(raftDir); err != nil {
		return nil, err
	}
	if err := src.Close(); err != nil {
		return nil, fmt.Errorf("close the old log: %w", err)
	}
	old := logStorePath(raftDir, from)
	res.Old = old + ".old"
	if err := os.RemoveAll(res.Old); err != nil {
		return nil, fmt.Errorf("remove %s: %w", res.Old, err)
	}
	if err := os.Rename(old, res.Old); err != nil {
		return nil, fmt.Errorf("move the old log aside (remove %s by hand before starting the node): %w", old, err)
	}
	if err := syncDir(raftDir); err != nil {
		return nil, err
	}
	return res, nil
}

// copyStores copies every log entry and stable key of src into the empty
// dst and reads everything back to check it.
func copyStores(dst, src *logStores) (*MigrateResult, error) {
	for _, k := range stableUintKeys {
		v, err := src.stable.GetUint64(k)
		if err != nil && !isKeyNotFound(err) {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		if err == nil {
			if err := dst.stable.SetUint64(k, v); err != nil {
				return nil, fmt.Errorf("write %s: %w", k, err)
			}
		}
	}
	for _, k := range stableBytesKeys {
		v, err := src.stable.Get(k)
		if err != nil && !isKeyNotFound(err) {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		if err == nil && len(v) > 0 {
			if err := dst.stable.Set(k, v); err != nil {
				return nil, fmt.Errorf("write %s: %w", k, err)
			}
		}
	}
	first, err := src.log.FirstIndex()
	if err != nil {
		return nil, fmt.Errorf("read the first index: %w", err)
	}
	last, err := src.log.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("read the last index: %w", err)
	}
	res := &MigrateResult{First: first, Last: last}
	if last == 0 {
		return res, nil
	}
	const batchBytes = 4 << 20
	var batch []*raft.Log
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := dst.log.StoreLogs(batch); err != nil {
			return fmt.Errorf("write entries %d..%d: %w", batch[0].Index, batch[len(batch)-1].Index, err)
		}
		batch, size = batch[:0], 0
		return nil
	}
	for i := first; i <= last; i++ {
		e := new(raft.Log)
		if err := src.log.GetLog(i, e); err != nil {
			return nil, fmt.Errorf("read entry %d: %w", i, err)
		}
		batch = append(batch, e)
		size += len(e.Data) + len(e.Extensions) + 64
		if size >= batchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return res, verifyCopy(dst, src, first, last)
}

// verifyCopy reads both stores back and compares them.
func verifyCopy(dst, src *logStores, first, last uint64) error {
	df, err := dst.log.FirstIndex()
	if err != nil {
		return err
	}
	dl, err := dst.log.LastIndex()
	if err != nil {
		return err
	}
	if df != first || dl != last {
		return fmt.Errorf("the new log holds %d..%d, the old %d..%d", df, dl, first, last)
	}
	for i := first; i <= last; i++ {
		var a, b raft.Log
		if err := src.log.GetLog(i, &a); err != nil {
			return fmt.Errorf("read back entry %d: %w", i, err)
		}
		if err := dst.log.GetLog(i, &b); err != nil {
			return fmt.Errorf("read back entry %d of the new log: %w", i, err)
		}
		if a.Index != b.Index || a.Term != b.Term || a.Type != b.Type || string(a.Data) != string(b.Data) || string(a.Extensions) != string(b.Extensions) {
			return fmt.Errorf("entry %d differs after the copy", i)
		}
	}
	for _, k := range stableUintKeys {
		a, aerr := src.stable.GetUint64(k)
		b, berr := dst.stable.GetUint64(k)
		if (aerr == nil) && (berr != nil || a != b) {
			return fmt.Errorf("%s differs after the copy", k)
		}
	}
	for _, k := range stableBytesKeys {
		a, _ := src.stable.Get(k)
		b, _ := dst.stable.Get(k)
		if string(a) != string(b) {
			return fmt.Errorf("%s differs after the copy", k)
		}
	}
	return nil
}

// isKeyNotFound reports raft-boltdb's "not found", which hashicorp/raft
// itself also recognises by its text.
func isKeyNotFound(err error) bool { return err != nil && err.Error() == "not found" }

// syncDir makes a directory's entries (a rename, a new file) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
