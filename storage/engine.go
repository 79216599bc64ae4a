package storage

import (
	"errors"
	"fmt"
)

// Entry is one key with its value and the Raft indexes that created it and
// last changed it. Slices returned by an engine belong to the engine and must
// not be modified; how long they stay valid is part of each method's
// contract (see Reader). Their capacity is capped at their length, so an
// append by the caller copies instead of writing into the engine.
type Entry struct {
	Key         []byte
	Value       []byte
	CreateIndex uint64
	ModIndex    uint64
}

// Reader is the read side shared by an Engine and its snapshot Views.
//
// Concurrency: any number of goroutines may call a Reader's methods at
// once. An Engine's reads must not overlap its Put or Delete (the caller
// serialises them, see Engine); a View's reads may overlap anything.
//
// Lifetime of the slices in the entries a Reader returns:
//   - from an Engine's Get: valid and unchanged for as long as the caller
//     holds them, whatever the engine does later;
//   - from an Engine's Scan: valid only until fn returns, unless the engine
//     is a StableScanner. A caller that keeps a key or value past that
//     copies it. (This lets an engine hand out its own memory without
//     copying every entry it scans.)
//   - from a View's Get or Scan: valid and unchanged until the View is
//     released (see Releaser), and only while the caller still holds the
//     View; later writes to the engine never change them.
//
// Errors: reads cannot fail; a missing key is reported by the bool.
type Reader interface {
	// Get returns the entry for key and whether it exists.
	Get(key []byte) (Entry, bool)
	// Scan calls fn for each entry with start <= key < end in ascending key
	// order, or descending when reverse is true, until fn returns false. A nil
	// start or end is unbounded on that side. fn must not modify the engine
	// and must not keep the entry's slices beyond the lifetime above.
	Scan(start, end []byte, reverse bool, fn func(Entry) bool)
	// Len returns the number of keys.
	Len() int
	// Bytes returns the total size of all keys and values, in bytes.
	Bytes() int64
}

// Engine is a mutable, ordered in-memory key/value store. Mutators take the
// Raft index of the entry that applies them first, so every key records the
// index that created it and the index that last changed it.
type Engine interface {
	Reader
	// Put sets key to value at Raft index idx. A new key gets CreateIndex =
	// ModIndex = idx; an existing key keeps its CreateIndex. The engine copies
	// key and value; the caller may reuse them once Put returns. It returns
	// the previous entry, if any, whose slices stay valid for as long as the
	// caller holds them.
	Put(idx uint64, key, value []byte) (prev Entry, existed bool)
	// Delete removes key. It returns the removed entry, if any, valid for as
	// long as the caller holds it. idx is the Raft index of the delete.
	Delete(idx uint64, key []byte) (prev Entry, existed bool)
	// Snapshot returns an immutable point-in-time view. Later writes to the
	// engine do not show in the view. Snapshot counts as a read: it may run
	// alongside Get, Scan and other Snapshot calls, never alongside Put or
	// Delete. Its cost depends on the engine (O(1) for the B-tree, O(n) for
	// the hash map).
	Snapshot() View
	// Name returns the engine's kind, as accepted by New.
	Name() string
}

// StableScanner is implemented by the engines whose Scan entries, like their
// Get results, stay valid for as long as the caller holds them (btree and
// hash, which never reuse a record's memory). A caller that keeps scanned
// entries must copy them only from an engine that is not one.
type StableScanner interface {
	Engine
	stableScan()
}

func (e *btreeEngine) stableScan() {}
func (e *hashEngine) stableScan()  {}

// View is an immutable point-in-time copy of an engine. Entries it returns
// stay valid until it is released (see Reader).
type View interface {
	Reader
}

// Releaser is implemented by Views that hold engine memory until they are
// released (the arena engine's). Release lets the engine reuse that memory
// at once instead of after the garbage collector finds the View unreachable.
// The View must not be read after Release, nor any slice it returned be
// used; calling it again does nothing. It is safe to call from any
// goroutine.
type Releaser interface {
	Release()
}

// Release releases v if it is a Releaser and does nothing otherwise.
func Release(v View) {
	if r, ok := v.(Releaser); ok {
		r.Release()
	}
}

// Engine kinds accepted by New.
const (
	KindBTree = "btree"
	KindHash  = "hash"
	KindArena = "arena"

	// KindDefault is the kind New returns for "".
	KindDefault = KindArena
)

// Kinds lists the engine kinds New accepts.
var Kinds = []string{KindArena, KindBTree, KindHash}

// ErrUnknownEngine is returned by New for a kind it does not know.
var ErrUnknownEngine = errors.New("unknown storage engine")

// New returns an empty engine of the given kind ("arena", "btree" or
// "hash"; empty means KindDefault, "arena").
func New(kind string) (Engine, error) {
	if kind == "" {
		kind = KindDefault
	}
	switch kind {
	case KindBTree:
		return NewBTree(), nil
	case KindHash:
		return NewHash(), nil
	case KindArena:
		return NewArena(), nil
	default:
		return nil, fmt.Errorf("%w %q (want %s, %s or %s)", ErrUnknownEngine, kind, KindArena, KindBTree, KindHash)
	}
}
