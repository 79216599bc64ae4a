package storage

import (
	"sync"

	"github.com/tidwall/btree"
)

// btreeView is a read-only B-tree of items with its byte count. It serves
// both as the read side of btreeEngine and, on its own, as a snapshot View.
// A view's tree is never mutated, so any number of goroutines may read it.
type btreeView struct {
	tr    *btree.BTreeG[item]
	bytes int64
}

// btreeEngine is the ordered engine: a tidwall B-tree without its own locks
// (the caller serialises writers against readers). Snapshot is a lazy
// copy-on-write Copy of the tree, O(1); the engine's later writes copy the
// nodes they touch instead of changing nodes a view shares.
type btreeEngine struct {
	btreeView // tr and bytes: changed only by Put and Delete

	// snapMu serialises Snapshot calls, which may run alongside readers:
	// Copy rewrites the engine tree's copy-on-write generation, a field no
	// read path looks at but that two concurrent Copy calls would race on.
	snapMu sync.Mutex
}

var (
	_ Engine = (*btreeEngine)(nil)
	_ View   = (*btreeView)(nil)
)

// NewBTree returns an empty ordered B-tree engine (KindBTree). Get and Scan
// are O(log n) to the first entry; Snapshot is O(1).
func NewBTree() Engine {
	return &btreeEngine{btreeView: btreeView{
		tr: btree.NewBTreeGOptions(itemLess, btree.Options{NoLocks: true}),
	}}
}

// Name returns KindBTree.
func (e *btreeEngine) Name() string { return KindBTree }

// Put sets key to value at index idx, storing a new item (never changing the
// old one in place).
func (e *btreeEngine) Put(idx uint64, key, value []byte) (Entry, bool) {
	// One search for a new key. An existing key is replaced in the same
	// pass and then stored again with its original CreateIndex; the path
	// hint (local to this call, so reads share no state) narrows the second
	// search.
	var hint btree.PathHint
	it := newItem(key, value, idx, idx)
	prev, existed := e.tr.SetHint(it, &hint)
	if !existed {
		e.bytes += it.size()
		return Entry{}, false
	}
	if prev.create != idx {
		it.create = prev.create
		e.tr.SetHint(it, &hint)
	}
	e.bytes += it.size() - prev.size()
	return prev.entry(), true
}

// Delete removes key.
func (e *btreeEngine) Delete(_ uint64, key []byte) (Entry, bool) {
	prev, existed := e.tr.Delete(keyItem(key))
	if !existed {
		return Entry{}, false
	}
	e.bytes -= prev.size()
	return prev.entry(), true
}

// Snapshot returns an O(1) copy-on-write view. It may run alongside Get,
// Scan and other Snapshot calls, never alongside Put or Delete.
func (e *btreeEngine) Snapshot() View {
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	return &btreeView{tr: e.tr.Copy(), bytes: e.bytes}
}

// Get returns the entry for key.
func (v *btreeView) Get(key []byte) (Entry, bool) {
	it, ok := v.tr.Get(keyItem(key))
	if !ok {
		return Entry{}, false
	}
	return it.entry(), true
}

// Scan calls fn for each entry with start <= key < end, in key order or
// reversed, until fn returns false.
func (v *btreeView) Scan(start, end []byte, reverse bool, fn func(Entry) bool) {
	if emptyRange(start, end) {
		return
	}
	if !reverse {
		iter := func(it item) bool {
			if !beforeEnd(it.kv, end) {
				return false
			}
			return fn(it.entry())
		}
		if start == nil {
			v.tr.Scan(iter)
		} else {
			v.tr.Ascend(keyItem(start), iter)
		}
		return
	}
	iter := func(it item) bool {
		if !beforeEnd(it.kv, end) {
			return true // only the key equal to end, where Descend starts
		}
		if !atOrAfterStart(it.kv, start) {
			return false
		}
		return fn(it.entry())
	}
	if end == nil {
		v.tr.Reverse(iter)
	} else {
		v.tr.Descend(keyItem(end), iter)
	}
}

// Len returns the number of keys.
func (v *btreeView) Len() int { return v.tr.Len() }

// Bytes returns the total size of all keys and values.
func (v *btreeView) Bytes() int64 { return v.bytes }
