package node

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logEntryOverhead approximates what a cached *raft.Log costs besides its
// Data and Extensions: the struct, its slice headers and the cache's slot.
const logEntryOverhead = 128

// logCache keeps the most recent log entries in memory in front of a
// raft.LogStore, bounded both in entries and in bytes (raft.LogCache bounds
// only entries, so 512 entries of up to a few hundred KiB each could hold
// over 100 MiB). It caches a contiguous run of indexes: entries stored right
// after the newest cached one extend it; anything else (a leader change
// rewriting the tail, a restore) starts a new run. The oldest entries are
// evicted first. An entry larger than the byte bound is never cached.
//
// Safe for concurrent use; the store's own contract applies to every call,
// which reaches the store whenever the cache cannot answer.
type logCache struct {
	store    raft.LogStore
	maxCount int
	maxBytes int64

	mu    sync.Mutex
	logs  []*raft.Log // contiguous indexes, logs[i].Index == first+i
	head  int         // logs[head:] is the cached run
	bytes int64
}

var _ raft.LogStore = (*logCache)(nil)

// newLogCache returns a cache of at most maxCount entries and maxBytes bytes
// in front of store.
func newLogCache(maxCount int, maxBytes int64, store raft.LogStore) (*logCache, error) {
	if maxCount <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("log cache bounds %d entries, %d bytes: both must be positive", maxCount, maxBytes)
	}
	return &logCache{store: store, maxCount: maxCount, maxBytes: maxBytes}, nil
}

// logSize returns the bytes a cached entry counts for.
func logSize(l *raft.Log) int64 {
	return int64(len(l.Data) + len(l.Extensions) + logEntryOverhead)
}

// GetLog returns the entry at index from the cache or the store.
func (c *logCache) GetLog(index uint64, out *raft.Log) error {
	c.mu.Lock()
	if run := c.logs[c.head:]; len(run) > 0 && index >= run[0].Index && index-run[0].Index < uint64(len(run)) {
		*out = *run[index-run[0].Index]
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	return c.store.GetLog(index, out)
}

// StoreLog stores one entry.
func (c *logCache) StoreLog(l *raft.Log) error {
	return c.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores entries in the store and then caches them.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	err := c.store.StoreLogs(logs)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// The store may hold some of them; cache none.
		c.reset()
		return err
	}
	for _, l := range logs {
		c.add(l)
	}
	return nil
}

// add appends l to the cached run (or starts a new run with it) and evicts
// the oldest entries beyond the bounds. c.mu is held.
func (c *logCache) add(l *raft.Log) {
	size := logSize(l)
	if size > c.maxBytes {
		c.reset()
		return
	}
	if run := c.logs[c.head:]; len(run) > 0 && run[len(run)-1].Index+1 != l.Index {
		c.reset()
	}
	c.logs = append(c.logs, l)
	c.bytes += size
	for len(c.logs)-c.head > c.maxCount || c.bytes > c.maxBytes {
		c.bytes -= logSize(c.logs[c.head])
		c.logs[c.head] = nil
		c.head++
	}
	if c.head > len(c.logs)/2 {
		n := copy(c.logs, c.logs[c.head:])
		clear(c.logs[n:])
		c.logs, c.head = c.logs[:n], 0
	}
}

// reset empties the cache. c.mu is held.
func (c *logCache) reset() {
	clear(c.logs)
	c.logs, c.head, c.bytes = c.logs[:0], 0, 0
}

// FirstIndex returns the store's first index.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex returns the store's last index.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange deletes entries min..max from the store and empties the
// cache, as raft.LogCache does.
func (c *logCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	c.reset()
	c.mu.Unlock()
	return c.store.DeleteRange(lo, hi)
}

// IsMonotonic reports whether the store is a raft.MonotonicLogStore that
// says it is, as raft.LogCache does.
func (c *logCache) IsMonotonic() bool {
	if s, ok := c.store.(raft.MonotonicLogStore); ok {
		return s.IsMonotonic()
	}
	return false
}
