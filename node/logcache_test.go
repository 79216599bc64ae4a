package node

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore is an in-memory log store that counts GetLog calls.
type countingStore struct {
	*raft.InmemStore
	gets int
}

func (s *countingStore) GetLog(index uint64, out *raft.Log) error {
	s.gets++
	return s.InmemStore.GetLog(index, out)
}

func storeRange(t *testing.T, c *logCache, first, last uint64, size int) {
	t.Helper()
	for i := first; i <= last; i++ {
		if err := c.StoreLog(&raft.Log{Index: i, Term: 1, Data: make([]byte, size)}); err != nil {
			t.Fatalf("StoreLog(%d): %v", i, err)
		}
	}
}

// cached reports whether GetLog(i) was answered without the store, and
// checks the entry returned.
func cached(t *testing.T, c *logCache, s *countingStore, i uint64) bool {
	t.Helper()
	before := s.gets
	var l raft.Log
	if err := c.GetLog(i, &l); err != nil {
		t.Fatalf("GetLog(%d): %v", i, err)
	}
	if l.Index != i {
		t.Fatalf("GetLog(%d) returned index %d", i, l.Index)
	}
	return s.gets == before
}

func TestLogCache_BoundedInBytes(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	const size = 1000
	maxBytes := int64(10 * (size + logEntryOverhead))
	c, err := newLogCache(512, maxBytes, s)
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, c, 1, 100, size)
	if c.bytes > maxBytes {
		t.Fatalf("cache holds %d bytes, bound %d", c.bytes, maxBytes)
	}
	for i := uint64(91); i <= 100; i++ {
		if !cached(t, c, s, i) {
			t.Fatalf("entry %d of the newest 10 went to the store", i)
		}
	}
	if cached(t, c, s, 90) {
		t.Fatal("entry 90 answered from the cache beyond its byte bound")
	}
}

func TestLogCache_BoundedInEntries(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(4, 1<<20, s)
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, c, 1, 10, 10)
	if !cached(t, c, s, 7) || !cached(t, c, s, 10) || cached(t, c, s, 6) {
		t.Fatal("cache of 4 entries does not hold exactly entries 7..10")
	}
}

func TestLogCache_OversizedEntryAndGaps(t *testing.T) {
	s := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(512, 4096, s)
	if err != nil {
		t.Fatal(err)
	}
	storeRange(t, c, 1, 3, 10)
	storeRange(t, c, 4, 4, 8192) // larger than the whole bound
	if cached(t, c, s, 4) || cached(t, c, s, 3) {
		t.Fatal("an entry over the byte bound was cached, or the run before it survived")
	}
	storeRange(t, c, 5, 6, 10)
	storeRange(t, c, 9, 9, 10) // a gap starts a new run
	if !cached(t, c, s, 9) || cached(t, c, s, 6) {
		t.Fatal("after a gap the cache does not hold just the new run")
	}
	if err := c.DeleteRange(9, 9); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := c.GetLog(9, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog after DeleteRange = %v, want ErrLogNotFound", err)
	}
}

func TestLogCache_RejectsZeroBounds(t *testing.T) {
	if _, err := newLogCache(0, 1, raft.NewInmemStore()); err == nil {
		t.Fatal("newLogCache accepted 0 entries")
	}
	if _, err := newLogCache(1, 0, raft.NewInmemStore()); err == nil {
		t.Fatal("newLogCache accepted 0 bytes")
	}
}
