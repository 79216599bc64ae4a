package storage

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tidwall/btree"
)

// arenaView is a read-only index of handles into an arena with its byte
// count. It serves both as the read side of arenaEngine and, on its own, as
// a snapshot View. Its reads return slices into the arena (see Get and
// Scan).
type arenaView struct {
	a     *arena
	tr    *btree.BTreeG[handle]
	bytes int64
}

// arenaSnapshot is a View taken by Snapshot: an arenaView that holds the
// arena's epoch open until it is released or garbage collected.
type arenaSnapshot struct {
	arenaView
	ticket *viewTicket
}

// viewTicket closes a View's epoch exactly once, whether Release or the
// garbage collector gets there first.
type viewTicket struct {
	a    *arena
	id   uint64
	done atomic.Bool
}

func (t *viewTicket) close() {
	if t.done.CompareAndSwap(false, true) {
		t.a.closeView(t.id)
	}
}

// arenaEngine is the size-bucketed arena engine (KindArena): records live
// in pointer-free slabs (see arena), ordered by a tidwall B-tree of 8-byte
// handles compared by the keys they name. Snapshot is a copy-on-write Copy
// of the index, O(1), plus an epoch that keeps the slots the View can reach
// from being reused.
type arenaEngine struct {
	arenaView // tr and bytes: changed only by Put and Delete

	// max is the handle of the largest key while maxOK; Put appends keys
	// beyond it with the B-tree's Load, which fills the rightmost leaf
	// instead of splitting it, so ascending loads (a restore, sequential
	// keys) leave full leaves.
	max   handle
	maxOK bool

	// snapMu serialises Snapshot calls, as in btreeEngine.
	snapMu sync.Mutex
}

var (
	_ Engine   = (*arenaEngine)(nil)
	_ View     = (*arenaSnapshot)(nil)
	_ Releaser = (*arenaSnapshot)(nil)
)

// NewArena returns an empty size-bucketed arena engine (KindArena) whose
// slabs are Go-heap []byte chunks.
func NewArena() Engine {
	return newArenaEngine(heapChunks{})
}

func newArenaEngine(chunks chunkSource) *arenaEngine {
	a := newArena(chunks)
	return &arenaEngine{arenaView: arenaView{
		a:  a,
		tr: btree.NewBTreeGOptions(a.less, btree.Options{NoLocks: true}),
	}}
}

// Name returns KindArena.
func (e *arenaEngine) Name() string { return KindArena }

// Put stores a new record for key and retires the old one, if any; a record
// is never changed in place. The previous entry is returned as a copy.
func (e *arenaEngine) Put(idx uint64, key, value []byte) (Entry, bool) {
	if !e.maxOK && e.tr.Len() > 0 {
		e.max, e.maxOK = e.tr.Max()
	}
	if e.maxOK && bytes.Compare(key, e.a.key(e.max)) > 0 {
		h := e.a.alloc(key, value, idx, idx)
		e.tr.Load(h)
		e.max = h
		e.bytes += int64(len(key) + len(value))
		return Entry{}, false
	}
	var hint btree.PathHint
	old, existed := e.tr.GetHint(e.a.writerProbe(key), &hint)
	create := idx
	var prev Entry
	if existed {
		prev = cloneEntry(e.a.entry(old))
		create = prev.CreateIndex
	}
	h := e.a.alloc(key, value, create, idx)
	e.tr.SetHint(h, &hint)
	e.bytes += int64(len(key) + len(value))
	if !existed {
		return Entry{}, false
	}
	e.bytes -= int64(len(prev.Key) + len(prev.Value))
	if old == e.max {
		e.max = h
	}
	e.a.retire(old)
	return prev, true
}

// Delete removes key and retires its record.
func (e *arenaEngine) Delete(_ uint64, key []byte) (Entry, bool) {
	old, existed := e.tr.Delete(e.a.writerProbe(key))
	if !existed {
		return Entry{}, false
	}
	prev := cloneEntry(e.a.entry(old))
	e.bytes -= int64(len(prev.Key) + len(prev.Value))
	if old == e.max {
		e.maxOK = false
	}
	e.a.retire(old)
	return prev, true
}

// Snapshot returns an O(1) view: a copy-on-write Copy of the index and a new
// epoch. The slots it can reach stay as they are until it is released (see
// Releaser) or garbage collected. It may run alongside Get, Scan and other
// Snapshot calls, never alongside Put or Delete.
func (e *arenaEngine) Snapshot() View {
	e.snapMu.Lock()
	defer e.snapMu.Unlock()
	t := &viewTicket{a: e.a, id: e.a.openView()}
	s := &arenaSnapshot{arenaView: arenaView{a: e.a, tr: e.tr.Copy(), bytes: e.bytes}, ticket: t}
	runtime.AddCleanup(s, (*viewTicket).close, t)
	return s
}

// Release ends the view's hold on the arena at once instead of when the
// garbage collector finds it unreachable. The view must not be read after.
func (s *arenaSnapshot) Release() { s.ticket.close() }

// Get returns the entry for key. The engine's Get returns a copy (see
// arenaEngine.Get); a View's slices alias the arena, which reuses none of
// the slots the View reaches until it is released.
func (v *arenaView) Get(key []byte) (Entry, bool) {
	p := v.a.acquireProbe(key)
	h, ok := v.tr.Get(p)
	v.a.releaseProbe(p)
	if !ok {
		return Entry{}, false
	}
	return v.a.entry(h), true
}

// Get returns a copy of the entry for key: the engine's writes retire and
// reuse slots, so its Get cannot hand out slices into the arena.
func (e *arenaEngine) Get(key []byte) (Entry, bool) {
	en, ok := e.arenaView.Get(key)
	if !ok {
		return Entry{}, false
	}
	en = cloneEntry(en)
	runtime.KeepAlive(e.a)
	return en, true
}

// Scan calls fn with each entry with start <= key < end, in key order or
// reversed, until fn returns false. The entries' slices alias the arena: no
// write can run during the engine's Scan, and a View's slots stay as they
// are until it is released, so nothing is copied.
//
// Records lie in the slabs in write order, not key order, so the first
// touch of each is a cache miss. Scan takes handles from the index in
// batches (see scanBatch) and touches every record of a batch before it
// decodes any, so the misses of one batch overlap instead of following one
// another.
func (v *arenaView) Scan(start, end []byte, reverse bool, fn func(Entry) bool) {
	if emptyRange(start, end) {
		return
	}
	b := scanBatch{a: v.a, start: start, end: end, reverse: reverse, fn: fn, size: firstScanBatch}
	switch {
	case !reverse && start == nil:
		v.tr.Scan(b.add)
	case !reverse:
		p := v.a.acquireProbe(start)
		v.tr.Ascend(p, b.add)
		v.a.releaseProbe(p)
	case end == nil:
		v.tr.Reverse(b.add)
	default:
		p := v.a.acquireProbe(end)
		v.tr.Descend(p, b.add)
		v.a.releaseProbe(p)
	}
	b.flush()
	runtime.KeepAlive(v.a)
}

// Scan batches: the first is small, so a scan that stops after an entry or
// two touches few records it does not need; each next one doubles, up to
// maxScanBatch.
const (
	firstScanBatch = 8
	maxScanBatch   = 64
)

// scanBatch is the state of one arenaView.Scan: handles the index gave and
// not yet passed to fn, and the bounds to check them against.
type scanBatch struct {
	a          *arena
	start, end []byte
	reverse    bool
	fn         func(Entry) bool
	done       bool // fn returned false or the range ended
	touch      byte // keeps the loads of flush's first pass

	size int // handles to collect before flushing them
	n    int
	hs   [maxScanBatch]handle
}

// add is the index iterator: it collects h and flushes the batch when it
// is full. It returns false once the scan is done.
func (b *scanBatch) add(h handle) bool {
	b.hs[b.n] = h
	b.n++
	if b.n < b.size {
		return true
	}
	b.size = min(2*b.size, maxScanBatch)
	return b.flush()
}

// flush hands the collected records to fn in order while they are in
// range. It returns false once the scan is done.
func (b *scanBatch) flush() bool {
	n := b.n
	b.n = 0
	if b.done {
		return false
	}
	// Touch every record first: loads that depend on nothing but their
	// handle, so the processor has the whole batch's misses in flight at
	// once, and decoding below finds the records in cache. A header of up
	// to 8 bytes lies in the line of the record's first byte (slots are
	// 8-aligned); one of up to 16 may reach into the next line, so touch
	// the 16th byte too, which every slot has (minRecordRead).
	slabs := *b.a.slabs.Load()
	large := *b.a.large.Load()
	var touch byte
	for _, h := range b.hs[:n] {
		r := recordAt(slabs, large, h)
		touch ^= r[0] ^ r[minRecordRead-1]
	}
	b.touch = touch
	for _, h := range b.hs[:n] {
		key, value, create, mod := recordFields(recordAt(slabs, large, h))
		switch {
		case !beforeEnd(key, b.end):
			// Ascending: past the end. Descending: only the key equal to
			// end, where Descend starts.
			if !b.reverse {
				b.done = true
			}
		case b.reverse && !atOrAfterStart(key, b.start):
			b.done = true
		default:
			b.done = !b.fn(Entry{Key: key, Value: value, CreateIndex: create, ModIndex: mod})
		}
		if b.done {
			return false
		}
	}
	return true
}

// Len returns the number of keys.
func (v *arenaView) Len() int { return v.tr.Len() }

// Bytes returns the total size of all keys and values.
func (v *arenaView) Bytes() int64 { return v.bytes }
