package fsm

import "github.com/cubekv/cubekv/storage"

// putKey and deleteKey are the only ways an op changes the key space: every
// write to the engine goes through them, so what must follow each change
// of a key has one place to live. Callers hold f.mu for writing.

// putKey writes key = val at idx and returns the entry it replaced.
func (f *FSM) putKey(idx uint64, key, val []byte) (prev storage.Entry, existed bool) {
	return f.engine.Put(idx, key, val)
}

// deleteKey removes key at idx and returns the entry it removed.
func (f *FSM) deleteKey(idx uint64, key []byte) (prev storage.Entry, existed bool) {
	return f.engine.Delete(idx, key)
}
