package fsm

import (
	"bytes"

	"github.com/cubekv/cubekv/storage"
)

// putKey and deleteKey are the only ways an op changes the key space: every
// write to the engine goes through them, so what must follow each change
// of a key has one place to live. Callers hold f.mu for writing.

// putKey writes key = val at idx, attached to lease (0: to none, detaching
// it from any), and returns the entry it replaced. The change history
// keeps key and val: they must not change after the call (a decoded
// command's bytes do not).
func (f *FSM) putKey(idx uint64, key, val []byte, lease uint64) (prev storage.Entry, existed bool) {
	prev, existed = f.engine.Put(idx, key, val)
	f.attachKey(key, lease)
	create := idx
	if existed {
		create = prev.CreateIndex
	}
	f.history.record(Event{Type: EventPut, Index: idx, Key: key, Value: val, CreateIndex: create})
	return prev, existed
}

// deleteKey removes key at idx and returns the entry it removed. Deleting
// a missing key changes nothing and records no event; the history keeps a
// copy of the key.
func (f *FSM) deleteKey(idx uint64, key []byte) (prev storage.Entry, existed bool) {
	prev, existed = f.engine.Delete(idx, key)
	f.detachKey(key)
	if existed {
		// A copy: an engine's returned key may share its allocation with
		// the deleted value, which the history must not keep alive.
		f.history.record(Event{Type: EventDelete, Index: idx, Key: bytes.Clone(key)})
	}
	return prev, existed
}
