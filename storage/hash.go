package storage

import (
	"maps"
	"slices"
)

// hashView is a read-only hash map of items with its byte count. It serves
// both as the read side of hashEngine and, on its own, as a snapshot View.
// Reads never write to it, so any number of goroutines may read it.
type hashView struct {
	m     map[string]item
	bytes int64
}

// hashEngine is the plain map engine (KindHash): O(1) Get, Put and Delete;
// Scan collects and sorts the matching keys on every call, O(n + m log m)
// for n keys and m matches; Snapshot copies the map, O(n). It has no locks:
// the caller serialises writers against readers.
type hashEngine struct {
	hashView // m and bytes: changed only by Put and Delete
}

var (
	_ Engine = (*hashEngine)(nil)
	_ View   = (*hashView)(nil)
)

// NewHash returns an empty hash-map engine (KindHash). Scans sort on demand
// and Snapshot copies the whole map, O(n): prefer NewBTree for large stores.
func NewHash() Engine {
	return &hashEngine{hashView: hashView{m: make(map[string]item)}}
}

// Name returns KindHash.
func (e *hashEngine) Name() string { return KindHash }

// Put sets key to value at index idx, storing a new item (never changing the
// old one in place).
func (e *hashEngine) Put(idx uint64, key, value []byte) (Entry, bool) {
	prev, existed := e.m[string(key)]
	create := idx
	if existed {
		create = prev.create
	}
	it := newItem(key, value, create, idx)
	e.m[string(key)] = it
	e.bytes += it.size()
	if !existed {
		return Entry{}, false
	}
	e.bytes -= prev.size()
	return prev.entry(), true
}

// Delete removes key.
func (e *hashEngine) Delete(_ uint64, key []byte) (Entry, bool) {
	prev, existed := e.m[string(key)]
	if !existed {
		return Entry{}, false
	}
	delete(e.m, string(key))
	e.bytes -= prev.size()
	return prev.entry(), true
}

// Snapshot returns a view holding a copy of the map: O(n) time and memory
// for n keys (the keys and values themselves are shared, never copied). It
// may run alongside Get, Scan and other Snapshot calls, never alongside Put
// or Delete.
func (e *hashEngine) Snapshot() View {
	return &hashView{m: maps.Clone(e.m), bytes: e.bytes}
}

// Get returns the entry for key.
func (v *hashView) Get(key []byte) (Entry, bool) {
	it, ok := v.m[string(key)]
	if !ok {
		return Entry{}, false
	}
	return it.entry(), true
}

// Scan collects the entries with start <= key < end, sorts them and calls
// fn for each, in key order or reversed, until fn returns false.
func (v *hashView) Scan(start, end []byte, reverse bool, fn func(Entry) bool) {
	if emptyRange(start, end) {
		return
	}
	var match []item
	for _, it := range v.m {
		if atOrAfterStart(it.kv, start) && beforeEnd(it.kv, end) {
			match = append(match, it)
		}
	}
	slices.SortFunc(match, itemCompare)
	if reverse {
		slices.Reverse(match)
	}
	for _, it := range match {
		if !fn(it.entry()) {
			return
		}
	}
}

// Len returns the number of keys.
func (v *hashView) Len() int { return len(v.m) }

// Bytes returns the total size of all keys and values.
func (v *hashView) Bytes() int64 { return v.bytes }
