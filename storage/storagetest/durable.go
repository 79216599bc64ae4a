package storagetest

import (
	"fmt"
	"sync"

	"github.com/cubekv/cubekv/storage"
)

// Committing adapts a Durable to the Engine contract the suite checks: it
// commits what is staged before every Snapshot (a Durable's views see only
// committed state) and after every every'th write (0: only before a
// Snapshot), at the highest Raft index written so far, so reads run both
// over staged changes and over committed ones. A failed commit panics.
func Committing(d storage.Durable, every int) storage.Engine {
	return &committing{Durable: d, every: every}
}

type committing struct {
	storage.Durable
	mu      sync.RWMutex
	every   int
	writes  int
	applied uint64
	// dirty says a write was made since the last commit; Snapshot commits
	// only then, so concurrent Snapshot calls after the writes only read.
	dirty bool
}

func (c *committing) wrote(idx uint64) {
	c.applied = max(c.applied, idx)
	c.writes++
	c.dirty = true
	if c.every > 0 && c.writes%c.every == 0 {
		c.commit()
	}
}

func (c *committing) commit() {
	if !c.dirty {
		return
	}
	c.dirty = false
	if err := c.Durable.Commit(max(c.applied, c.Durable.Applied())); err != nil {
		panic(fmt.Errorf("commit: %w", err))
	}
}

func (c *committing) Put(idx uint64, key, value []byte) (storage.Entry, bool) {
	prev, ok := c.Durable.Put(idx, key, value)
	c.wrote(idx)
	return prev, ok
}

func (c *committing) Delete(idx uint64, key []byte) (storage.Entry, bool) {
	prev, ok := c.Durable.Delete(idx, key)
	c.wrote(idx)
	return prev, ok
}

func (c *committing) Snapshot() storage.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commit()
	return c.Durable.Snapshot()
}

func (c *committing) Get(key []byte) (storage.Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.Durable.Get(key)
}

func (c *committing) Scan(start, end []byte, reverse bool, fn func(storage.Entry) bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	c.Durable.Scan(start, end, reverse, fn)
}

func (c *committing) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.Durable.Len()
}

func (c *committing) Bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.Durable.Bytes()
}
