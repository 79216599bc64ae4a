package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tidwall/btree"
)

// BulkLoader is implemented by the engines that can fill themselves, while
// empty, from entries that arrive in ascending key order, as a restore from
// a snapshot reads them: faster and in less memory than one Put per entry.
// The arena and btree engines are BulkLoaders; Load fills any engine, with
// BulkLoad where it is offered and Put where it is not.
//
// Concurrency: BulkLoad is a write. It must not overlap any other call on
// the engine, nor any read: a restore builds a fresh engine that no reader
// sees until BulkLoad has returned.
type BulkLoader interface {
	Engine
	// BulkLoad adds every entry next returns, until next returns false or
	// an error. The engine must be empty (else ErrNotEmpty). Keys must be
	// strictly ascending and every entry must have CreateIndex <= ModIndex
	// (else an error wrapping ErrUnordered). The engine copies each entry
	// before it calls next again, so next may reuse its buffers. On any
	// error, next's included (returned wrapped), the engine is left empty,
	// as if BulkLoad had not been called: nothing half-built is visible.
	BulkLoad(next func() (Entry, bool, error)) error
}

// Errors of BulkLoad.
var (
	// ErrNotEmpty is returned by BulkLoad on an engine that holds keys.
	ErrNotEmpty = errors.New("bulk load into a non-empty engine")
	// ErrUnordered is returned by BulkLoad for a key not above the one
	// before it, or an entry created after it was last changed.
	ErrUnordered = errors.New("bulk load entries out of order")
)

// Load fills the empty engine e from next as BulkLoad does: with e's
// BulkLoad if it is a BulkLoader, otherwise with one Put per entry (two for
// an entry changed after it was created: CreateIndex, then ModIndex), after
// the same checks. The error contract is BulkLoad's, except that an engine
// without BulkLoad that fails part way through holds the entries put so far;
// the caller of Load on such an engine discards it on error.
func Load(e Engine, next func() (Entry, bool, error)) error {
	if bl, ok := e.(BulkLoader); ok {
		return bl.BulkLoad(next)
	}
	if e.Len() != 0 {
		return ErrNotEmpty
	}
	var o order
	for {
		en, ok, err := next()
		if err != nil {
			return fmt.Errorf("bulk load: %w", err)
		}
		if !ok {
			return nil
		}
		if err := o.check(en); err != nil {
			return err
		}
		e.Put(en.CreateIndex, en.Key, en.Value)
		if en.ModIndex != en.CreateIndex {
			e.Put(en.ModIndex, en.Key, en.Value)
		}
	}
}

// order checks that a bulk load's entries ascend. It keeps its own copy of
// the last key: the caller may reuse the buffers of the entries it passed.
type order struct {
	prev    []byte
	started bool
}

func (o *order) check(e Entry) error {
	if o.started && bytes.Compare(o.prev, e.Key) >= 0 {
		return fmt.Errorf("key not above the previous one: %w", ErrUnordered)
	}
	if e.CreateIndex > e.ModIndex {
		return fmt.Errorf("create index %d after mod index %d: %w", e.CreateIndex, e.ModIndex, ErrUnordered)
	}
	o.prev = append(o.prev[:0], e.Key...)
	o.started = true
	return nil
}

// Both engines build their tidwall B-trees with the default degree.
const (
	// treeMax is the most items a node of a degree-32 tidwall B-tree holds.
	treeMax = 2*32 - 1
	// treeSplit is how many items the left half of a split node keeps:
	// tidwall splits a full node around its item at treeMax/2.
	treeSplit = treeMax / 2
)

// packer feeds items in ascending order to a tidwall B-tree so that its
// leaves end up full, where inserting them in order (with Set or Load)
// leaves every leaf half full: a full leaf splits in two halves and the
// left one never grows again.
//
// The items come in blocks of treeMax+1: treeMax for one leaf, then the
// separator that goes above it. Of each block, the first treeSplit items and
// the separator go in at once, in order, with Load; a leaf then fills with
// one block's first items, its separator and the next block's first items,
// and splits when the next separator comes, exactly between the two blocks.
// From that split on, a block's leaf holds its first treeSplit items and no
// later item lands in it, so the rest of the block (held until then) goes
// in with Set and fills it to treeMax, with no further split. Internal nodes
// stay half full, as with ordered inserts; they are one item in treeMax+1.
// Only the number of items a node takes depends on how tidwall splits; any
// split rule would give a correct tree.
type packer[T any] struct {
	tr *btree.BTreeG[T]
	n  int // items of the current block seen so far
	// cur holds the current block's items after its first treeSplit; held
	// the previous block's, waiting for its leaf to split off.
	cur, held []T
	hint      btree.PathHint
}

func newPacker[T any](tr *btree.BTreeG[T]) *packer[T] {
	return &packer[T]{
		tr:   tr,
		cur:  make([]T, 0, treeMax-treeSplit),
		held: make([]T, 0, treeMax-treeSplit),
	}
}

// add adds it, which must be above every item added before.
func (p *packer[T]) add(it T) {
	switch {
	case p.n < treeSplit:
		p.tr.Load(it)
	case p.n < treeMax:
		p.cur = append(p.cur, it)
	default: // the separator
		p.tr.Load(it)
		p.setAll(p.held)
		p.cur, p.held = p.held[:0], p.cur
		p.n = 0
		return
	}
	p.n++
}

// finish adds the items still held.
func (p *packer[T]) finish() {
	p.setAll(p.held)
	p.setAll(p.cur)
	p.held, p.cur = p.held[:0], p.cur[:0]
}

func (p *packer[T]) setAll(items []T) {
	for _, it := range items {
		p.tr.SetHint(it, &p.hint)
	}
	clear(items)
}

// BulkLoad fills the empty engine from entries in ascending key order (see
// BulkLoader): one item per entry, in a B-tree whose leaves are full.
func (e *btreeEngine) BulkLoad(next func() (Entry, bool, error)) error {
	if e.tr.Len() != 0 {
		return ErrNotEmpty
	}
	tr := btree.NewBTreeGOptions(itemLess, btree.Options{NoLocks: true})
	p := newPacker(tr)
	var o order
	var n int64
	for {
		en, ok, err := next()
		if err != nil {
			return fmt.Errorf("bulk load: %w", err)
		}
		if !ok {
			break
		}
		if err := o.check(en); err != nil {
			return err
		}
		it := newItem(en.Key, en.Value, en.CreateIndex, en.ModIndex)
		p.add(it)
		n += it.size()
	}
	p.finish()
	e.tr, e.bytes = tr, n
	return nil
}

// BulkLoad fills the empty engine from entries in ascending key order (see
// BulkLoader). It builds a new arena: records take their slots in key
// order, so the records of a class lie in the slabs as the index orders
// them and a scan walks memory forwards; each record is written once, with
// both its indexes; and the index's leaves are full. The engine takes the
// new arena only once every entry is in; on error the new arena is let go
// (its mapped slabs, if any, unmapped at once).
func (e *arenaEngine) BulkLoad(next func() (Entry, bool, error)) (err error) {
	if e.tr.Len() != 0 {
		return ErrNotEmpty
	}
	chunks := e.a.chunks.fresh()
	a := newArena(chunks)
	tr := btree.NewBTreeGOptions(a.less, btree.Options{NoLocks: true})
	defer func() {
		if err != nil {
			a.discard()
		}
	}()
	p := newPacker(tr)
	var o order
	var n int64
	for {
		en, ok, err := next()
		if err != nil {
			return fmt.Errorf("bulk load: %w", err)
		}
		if !ok {
			break
		}
		if err := o.check(en); err != nil {
			return err
		}
		p.add(a.alloc(en.Key, en.Value, en.CreateIndex, en.ModIndex))
		n += int64(len(en.Key) + len(en.Value))
	}
	p.finish()
	// e's arena is empty and no View of it can reach a record; it goes with
	// its chunks when the collector finds it unreachable.
	e.snapMu.Lock()
	e.arenaView = arenaView{a: a, tr: tr, bytes: n}
	e.maxOK = false
	e.snapMu.Unlock()
	return nil
}
