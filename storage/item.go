package storage

import "bytes"

// item is one stored key with its value and Raft indexes, as both engines
// keep it. The key and the value share one allocation, kv: kv's length is the
// key's length and its capacity is the key's length plus the value's, so the
// value is kv[len(kv):cap(kv)]. That keeps an item at three words plus two
// uint64s (40 bytes on 64-bit, 28 on 32-bit) with no header in front of the
// data.
//
// An item is immutable once built: a Put of an existing key stores a new
// item, so slices handed out by an engine never change underneath a caller.
type item struct {
	kv     []byte
	create uint64
	mod    uint64
}

// newItem copies key and value into one allocation.
func newItem(key, value []byte, create, mod uint64) item {
	buf := make([]byte, len(key)+len(value))
	copy(buf, key)
	copy(buf[len(key):], value)
	return item{kv: buf[:len(key)], create: create, mod: mod}
}

// keyItem returns a search item for key; it must not be stored.
func keyItem(key []byte) item {
	return item{kv: key}
}

// key returns the item's key; its capacity is capped so that an append by a
// caller cannot write over the value.
func (it item) key() []byte {
	return it.kv[:len(it.kv):len(it.kv)]
}

// value returns the item's value.
func (it item) value() []byte {
	return it.kv[len(it.kv):cap(it.kv)]
}

// size returns the number of key and value bytes the item holds.
func (it item) size() int64 {
	return int64(cap(it.kv))
}

// entry returns the item as an Entry.
func (it item) entry() Entry {
	return Entry{Key: it.key(), Value: it.value(), CreateIndex: it.create, ModIndex: it.mod}
}

// itemCompare orders items by key, as bytes.Compare does.
func itemCompare(a, b item) int {
	return bytes.Compare(a.kv, b.kv)
}

// itemLess orders items by key.
func itemLess(a, b item) bool {
	return itemCompare(a, b) < 0
}

// emptyRange reports whether [start, end) holds no key at all.
func emptyRange(start, end []byte) bool {
	return start != nil && end != nil && bytes.Compare(start, end) >= 0
}

// beforeEnd reports whether key < end, with a nil end unbounded.
func beforeEnd(key, end []byte) bool {
	return end == nil || bytes.Compare(key, end) < 0
}

// atOrAfterStart reports whether key >= start, with a nil start unbounded.
func atOrAfterStart(key, start []byte) bool {
	return start == nil || bytes.Compare(key, start) >= 0
}
