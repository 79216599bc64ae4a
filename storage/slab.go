package storage

import (
	"bytes"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
)

// handle names one record in an arena without a pointer: a slab number in
// the high half and a byte offset in the low half, or, with handleLarge set,
// the number of a record allocated on its own. With handleProbe set it names
// one of the arena's probe keys, the keys a search compares records with.
type handle uint64

const (
	handleLarge handle = 1 << 63
	handleProbe handle = 1 << 62
)

const (
	// slabSize is the size of one slab, the unit the arena takes memory in.
	slabSize = 64 << 10
	// maxClassSize is the largest slot a slab holds; bigger records get an
	// allocation of their own.
	maxClassSize = slabSize / 8
	// classGrowth is the factor between neighbouring slot sizes.
	classGrowth = 1.125
	// nProbes is how many searches may run at once; probe 0 is the writer's.
	nProbes = 64
)

// classSizes are the slot sizes, ascending, all multiples of 8: each about
// classGrowth times the previous one, from 16 bytes to maxClassSize.
var classSizes = makeClassSizes()

func makeClassSizes() []int {
	var sizes []int
	for s := 16.0; ; s *= classGrowth {
		size := (int(math.Ceil(s)) + 7) &^ 7
		if len(sizes) > 0 && size <= sizes[len(sizes)-1] {
			size = sizes[len(sizes)-1] + 8
		}
		if size >= maxClassSize {
			return append(sizes, maxClassSize)
		}
		sizes = append(sizes, size)
		s = float64(size)
	}
}

// classOf returns the smallest class whose slots hold n bytes, or -1 if n is
// larger than maxClassSize.
func classOf(n int) int {
	lo, hi := 0, len(classSizes)
	for lo < hi {
		m := (lo + hi) / 2
		if classSizes[m] < n {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(classSizes) {
		return -1
	}
	return lo
}

// slab is one chunk of memory cut into slots of one class.
type slab struct {
	buf   []byte
	class int
}

// retired is a slot a write removed from the index, waiting until no live
// View can see it. stamp is the arena's epoch when it was retired.
type retired struct {
	h     handle
	stamp uint64
}

// arena holds the records of one engine and of every View taken from it.
//
// Memory comes from chunks in slabs of slabSize bytes; each slab is cut into
// slots of one size class, and a record takes the smallest slot it fits.
// Records larger than maxClassSize are allocated on their own. No slab or
// record holds a Go pointer, so the garbage collector never scans them.
//
// Concurrency: the writer (the engine's Put and Delete, never concurrent
// with each other, with Snapshot or with the engine's reads) owns the free
// lists, the bump pointers and the retire queue. Readers (the engine's Get
// and Scan, and Views from any goroutine) only decode records they reach
// through an index; they find slabs through the slabs table, which the
// writer publishes atomically and only ever extends, so a reader never sees a
// slab move. A slot a reader can reach is never rewritten: see retire.
type arena struct {
	chunks chunkSource

	slabs atomic.Pointer[[]slab]   // append-only; readers load it
	large atomic.Pointer[[][]byte] // records too big for a slab; nil when free

	// Writer only.
	free      [][]handle // per class: free slots
	cur       []int      // per class: slab being cut, or -1
	curOff    []int      // per class: next offset in cur
	largeFree []uint32   // free entries of large
	limbo     []retired  // FIFO by stamp
	limboHead int

	// probes are the keys searches compare records with, one per running
	// search; probeBusy has bit i set while probes[i] is taken. Probe 0 is
	// the writer's and never in probeBusy.
	probes    [nProbes][]byte
	probeBusy atomic.Uint64

	// Views. mu guards epoch and live; oldest is the smallest id in live,
	// or math.MaxUint64 when no View is live.
	mu     sync.Mutex
	epoch  uint64
	live   map[uint64]int
	oldest atomic.Uint64

	// Writer only: bytes taken from chunks and by large records.
	slabBytes, largeBytes int64
}

func newArena(chunks chunkSource) *arena {
	n := len(classSizes)
	a := &arena{
		chunks: chunks,
		free:   make([][]handle, n),
		cur:    make([]int, n),
		curOff: make([]int, n),
		live:   make(map[uint64]int),
	}
	for i := range a.cur {
		a.cur[i] = -1
	}
	a.slabs.Store(new([]slab))
	a.large.Store(new([][]byte))
	a.oldest.Store(math.MaxUint64)
	runtime.AddCleanup(a, func(c chunkSource) { c.release() }, chunks)
	return a
}

// discard gives back the arena's memory at once, for an arena that was
// never published to a reader (a failed bulk load): its mapped slabs are
// unmapped now instead of when the collector finds it unreachable.
func (a *arena) discard() {
	a.slabs.Store(new([]slab))
	a.large.Store(new([][]byte))
	a.chunks.release()
}

// bytes returns the record bytes at h. The slice runs to the end of the
// slot's slab (or the large record), not to the end of the record.
func (a *arena) bytes(h handle) []byte {
	if h&handleLarge != 0 {
		return (*a.large.Load())[h&^handleLarge]
	}
	s := (*a.slabs.Load())[h>>32]
	return s.buf[uint32(h):]
}

// recordAt is arena.bytes with the slab and large record tables loaded
// once by the caller, for a run of handles.
func recordAt(slabs []slab, large [][]byte, h handle) []byte {
	if h&handleLarge != 0 {
		return large[h&^handleLarge]
	}
	return slabs[h>>32].buf[uint32(h):]
}

// key returns the key of the record (or probe) h.
func (a *arena) key(h handle) []byte {
	if h&handleProbe != 0 {
		return a.probes[h&^handleProbe]
	}
	return recordKey(a.bytes(h))
}

// less orders handles by the keys they name.
func (a *arena) less(x, y handle) bool {
	return bytes.Compare(a.key(x), a.key(y)) < 0
}

// entry decodes the record h; the slices alias the arena.
func (a *arena) entry(h handle) Entry {
	return recordEntry(a.bytes(h))
}

// writerProbe makes key the writer's probe and returns its handle.
func (a *arena) writerProbe(key []byte) handle {
	a.probes[0] = key
	return handleProbe
}

// acquireProbe takes a free reader probe for key and returns its handle;
// releaseProbe must give it back.
func (a *arena) acquireProbe(key []byte) handle {
	for {
		busy := a.probeBusy.Load()
		free := ^busy &^ 1
		if free == 0 {
			runtime.Gosched()
			continue
		}
		i := 0
		for free&(1<<i) == 0 {
			i++
		}
		if a.probeBusy.CompareAndSwap(busy, busy|1<<i) {
			a.probes[i] = key
			return handleProbe | handle(i)
		}
	}
}

func (a *arena) releaseProbe(h handle) {
	i := h &^ handleProbe
	a.probes[i] = nil
	a.probeBusy.And(^(uint64(1) << i))
}

// alloc stores a record and returns its handle and the number of bytes its
// slot takes.
func (a *arena) alloc(key, value []byte, create, mod uint64) handle {
	t := recordTag(key, value, create, mod)
	n := recordLen(t, key, value)
	c := classOf(n)
	if c < 0 {
		buf := make([]byte, n)
		putRecord(buf, t, key, value, create, mod)
		a.largeBytes += int64(n)
		tbl := *a.large.Load()
		if k := len(a.largeFree); k > 0 {
			i := a.largeFree[k-1]
			a.largeFree = a.largeFree[:k-1]
			tbl[i] = buf
			return handleLarge | handle(i)
		}
		tbl = append(tbl, buf)
		a.large.Store(&tbl)
		return handleLarge | handle(len(tbl)-1)
	}
	var h handle
	if k := len(a.free[c]); k > 0 {
		h = a.free[c][k-1]
		a.free[c] = a.free[c][:k-1]
	} else {
		if a.cur[c] < 0 || a.curOff[c]+classSizes[c] > slabSize {
			a.cur[c] = a.newSlab(c)
			a.curOff[c] = 0
		}
		h = handle(a.cur[c])<<32 | handle(a.curOff[c])
		a.curOff[c] += classSizes[c]
	}
	putRecord(a.bytes(h)[:n], t, key, value, create, mod)
	return h
}

// newSlab takes a slab for class c from the chunks and returns its number.
func (a *arena) newSlab(c int) int {
	tbl := append(*a.slabs.Load(), slab{buf: a.chunks.alloc(slabSize), class: c})
	a.slabs.Store(&tbl)
	a.slabBytes += slabSize
	return len(tbl) - 1
}

// retire gives back the slot of h, which the engine's index no longer
// holds. Views taken before now may still reach it, so it waits in the
// retire queue, stamped with the current epoch, until every such View is
// gone; with no View live it is free at once. It also frees whatever queued
// slots no live View can reach any more.
func (a *arena) retire(h handle) {
	oldest := a.oldest.Load()
	if a.limboHead == len(a.limbo) && oldest == math.MaxUint64 {
		a.release(h)
		return
	}
	a.mu.Lock()
	stamp := a.epoch
	a.mu.Unlock()
	a.limbo = append(a.limbo, retired{h: h, stamp: stamp})
	a.reclaim(oldest)
}

// reclaim frees the queued slots retired at or before epoch oldest: no live
// View was taken before them.
func (a *arena) reclaim(oldest uint64) {
	for a.limboHead < len(a.limbo) && a.limbo[a.limboHead].stamp <= oldest {
		a.release(a.limbo[a.limboHead].h)
		a.limboHead++
	}
	switch {
	case a.limboHead == len(a.limbo):
		a.limbo, a.limboHead = a.limbo[:0], 0
	case a.limboHead > len(a.limbo)/2:
		n := copy(a.limbo, a.limbo[a.limboHead:])
		a.limbo, a.limboHead = a.limbo[:n], 0
	}
}

// pending returns the number of retired slots still waiting for Views.
func (a *arena) pending() int { return len(a.limbo) - a.limboHead }

// release puts h's slot on its free list.
func (a *arena) release(h handle) {
	if h&handleLarge != 0 {
		i := uint32(h &^ handleLarge)
		tbl := *a.large.Load()
		a.largeBytes -= int64(len(tbl[i]))
		tbl[i] = nil
		a.largeFree = append(a.largeFree, i)
		return
	}
	c := (*a.slabs.Load())[h>>32].class
	a.free[c] = append(a.free[c], h)
}

// openView registers a new View and returns its id: the epoch it was taken
// in. Slots retired from now on carry a later stamp.
func (a *arena) openView() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	id := a.epoch
	a.epoch++
	a.live[id]++
	if a.oldest.Load() == math.MaxUint64 {
		a.oldest.Store(id)
	}
	return id
}

// closeView forgets the View id; the writer frees the slots only it could
// see on its next Put or Delete.
func (a *arena) closeView(id uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.live[id]--; a.live[id] == 0 {
		delete(a.live, id)
	}
	oldest := uint64(math.MaxUint64)
	for v := range a.live {
		oldest = min(oldest, v)
	}
	a.oldest.Store(oldest)
}
