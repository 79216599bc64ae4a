package node

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
)

// ErrStorage means the node's last write to its Raft log or stable store
// failed (most often a full disk): it is not ready, and its log falls
// behind until a write succeeds again.
var ErrStorage = errors.New("storage writes failing")

// ErrLowSpace means the data directory's file system has less free space
// than the node is configured to start with.
var ErrLowSpace = errors.New("not enough free disk space")

// FreeSpace returns the bytes available to an unprivileged writer on the
// file system holding path.
func FreeSpace(path string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// CheckFreeSpace refuses a data directory with fewer than min free bytes,
// like etcd's space quota, but at start: a node that starts on a nearly
// full disk falls behind at its first snapshot. min 0 checks nothing.
func CheckFreeSpace(dir string, min uint64) error {
	if min == 0 {
		return nil
	}
	free, err := FreeSpace(dir)
	if err != nil {
		return err
	}
	if free < min {
		return fmt.Errorf("%w: %s has %d bytes free, less than --min-free-space %d: free some space (docs/operations.md \"Full disk\") or lower the flag", ErrLowSpace, dir, free, min)
	}
	return nil
}

// storageHealth records whether the Raft stores' and snapshots' writes
// succeed. raft
// itself only logs a failed append (a follower answers the leader
// "failure" and is retried; a leader steps down), so the node learns of a
// full disk here: StorageError is non-nil from the first failed write until
// the next one succeeds. Safe for concurrent use.
type storageHealth struct {
	logger   *slog.Logger
	failures atomic.Uint64

	mu    sync.Mutex
	err   error     // last write error, nil when the last write succeeded
	since time.Time // first failure of the current run
}

func (h *storageHealth) record(err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		if h.err != nil {
			h.logger.Info("storage writes succeed again", "duration", time.Since(h.since).Round(time.Millisecond))
			h.err = nil
		}
		return
	}
	h.failures.Add(1)
	if h.err == nil {
		h.since = time.Now()
		// Once per run of failures: raft logs each retry itself.
		h.logger.Error("storage write failed: the node is not ready and falls behind until writes succeed; free disk space in the data dir (docs/operations.md \"Full disk\")", "err", err)
	}
	h.err = err
}

// current returns the last write error and when the failures began.
func (h *storageHealth) current() (error, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err, h.since
}

// watchedLogStore reports the outcome of every log write to health.
type watchedLogStore struct {
	raft.LogStore
	health *storageHealth
}

func (w *watchedLogStore) StoreLog(l *raft.Log) error {
	err := w.LogStore.StoreLog(l)
	w.health.record(err)
	return err
}

func (w *watchedLogStore) StoreLogs(ls []*raft.Log) error {
	err := w.LogStore.StoreLogs(ls)
	w.health.record(err)
	return err
}

func (w *watchedLogStore) DeleteRange(min, max uint64) error {
	err := w.LogStore.DeleteRange(min, max)
	w.health.record(err)
	return err
}

// watchedStableStore reports the outcome of every stable store write.
type watchedStableStore struct {
	raft.StableStore
	health *storageHealth
}

func (w *watchedStableStore) Set(k, v []byte) error {
	err := w.StableStore.Set(k, v)
	w.health.record(err)
	return err
}

func (w *watchedStableStore) SetUint64(k []byte, v uint64) error {
	err := w.StableStore.SetUint64(k, v)
	w.health.record(err)
	return err
}

// StorageError returns a non-nil error wrapping ErrStorage while the
// node's writes to its Raft log, stable store or snapshots fail (from the
// first failure until a write succeeds), nil otherwise.
func (n *Node) StorageError() error {
	if n.health == nil {
		return nil
	}
	err, since := n.health.current()
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w since %s: %v", ErrStorage, since.UTC().Format(time.RFC3339), err)
}

// StorageFailures counts failed writes to the Raft log, stable store and
// snapshots since start.
func (n *Node) StorageFailures() uint64 {
	if n.health == nil {
		return 0
	}
	return n.health.failures.Load()
}

// IsMonotonic passes the wrapped store's answer on (raft asks it after a
// snapshot install).
func (w *watchedLogStore) IsMonotonic() bool {
	m, ok := w.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
