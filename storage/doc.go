// Package storage holds cubekv's in-memory storage engines and the contract
// they share (Engine, View). Every engine passes the same conformance suite
// and randomized model test (storagetest). It also states the contract of a
// durable engine (Durable: staged writes committed in atomic batches with
// the applied Raft index, meta records, Sync) and of the directory that
// holds one (DurableDir); storage/pebbleng implements both on pebble.
//
//   - arena (the default): records packed into pointer-free slabs by size
//     class, indexed by a B-tree of 8-byte handles. The smallest per key and
//     the least work for the garbage collector; Snapshot is O(1).
//   - btree: one heap allocation per record in a B-tree of items; Snapshot
//     is an O(1) copy-on-write view.
//   - hash: a plain map; scans sort on demand and Snapshot copies the map.
//
// Engines are deterministic data structures. They do no locking of their own
// beyond what their views need: the caller (fsm.FSM) serialises writers
// against readers with a sync.RWMutex, so any number of Get/Scan calls may run
// together, but never alongside Put/Delete. A View returned by Snapshot is
// immutable and may be read from any goroutine while the engine it came from
// keeps changing. How long the slices of a returned entry stay valid is part
// of the Reader contract: what an engine's Get, Put and Delete return, for as
// long as the caller holds it; what an engine's Scan passes to fn, until fn
// returns; what a View returns, until the View is released.
//
// # The arena engine
//
// Memory. A record (key, value, create and mod index) is encoded behind a
// header of about 6 bytes (9 for a key created before its last write): a tag
// byte that gives the width of each of the little-endian fields after it
// (see record.go). It goes into a slot of the smallest size class that
// holds it. Classes start at 16 bytes and grow by 1.125x,
// rounded to 8 bytes, up to 8 KiB; a slab is a 64 KiB chunk of one class.
// memcached grows its classes by 1.25x; the finer step halves the space
// lost to rounding a record up to its slot (about 6% on average instead of
// 12%), and costs at most one partly cut slab per class in use. Records over
// 8 KiB get an allocation of their own. Slabs come from the Go heap as
// []byte: no Go pointer is in them, so the collector never scans them, and
// the number of heap objects grows with the bytes stored / 64 KiB, not with
// the number of keys. (Slabs mapped outside the heap work too, and the tests
// run both; the heap is the default because GOMEMLIMIT then sees all the
// memory the engine holds, see docs/performance.md.) Slabs are never given
// back: a freed slot goes to its class's free list for the next record of
// that class, as in memcached.
//
// Index. A tidwall B-tree holds 8-byte handles (slab number and offset, or
// the number of a large record), compared by the keys they point to. A
// search compares records with a probe key: a handle with a flag bit that
// names one of 64 probe slots, which a reader takes with an atomic bit set
// for the duration of its search (slot 0 is the writer's), so concurrent
// readers never share one.
//
// Reads. Scan hands fn slices into the slabs, and so do a View's Get and
// Scan: no write can run during the engine's Scan, and no slot a View
// reaches is rewritten until the View is released (see Snapshots), so they
// copy nothing. The engine's Get copies the entry it returns into one
// allocation, and Put and Delete copy the previous entry: the engine's next
// write may reuse that slot. Records lie in the slabs in write order, not
// key order, so a scan's first touch of each record is a cache miss; Scan
// takes handles from the index in batches and touches all the records of a
// batch before decoding any, so their misses overlap. The whole header
// comes before the key and every slot is 8-aligned, so a header of up to 8
// bytes lies in the line of the record's first byte and is decoded from
// one load.
//
// Snapshots. Snapshot copies the index copy-on-write (O(1)) and opens an
// epoch: the View gets the arena's epoch number as its id and the epoch
// advances. Records are never changed in place: Put writes a new record and
// retires the old slot, Delete retires its slot. With no View live a retired
// slot is free at once; otherwise it waits in a FIFO queue stamped with the
// current epoch, and the writer frees it (on a later Put or Delete) once the
// oldest live View's id is at least the stamp, that is once every View
// taken before the slot was retired is gone. A View is gone when Release
// (see Releaser; fsm calls it when raft releases the snapshot) is called or,
// failing that, when the garbage collector finds it unreachable. A View
// reads slabs without locks while the writer fills other slots: the slab
// table is only ever appended to and published atomically, and no slot a
// View can reach is written until the View is gone. So a snapshot's I/O
// never blocks Apply, and Apply never blocks it.
//
// Bulk loads. A restore reads a snapshot's entries in ascending key order;
// BulkLoad (see BulkLoader and bulk.go) takes them into a new arena and
// index that the engine adopts only when every entry is in. Records are
// allocated as they arrive, so each class's records lie in its slabs in key
// order, and the index's leaves are filled completely instead of half.
//
// What a long snapshot pins: every slot retired while it (or an older View)
// lives, which includes records written after it was taken and overwritten
// again before it went, and the index nodes the writer copied since. So the
// bound is the write volume, not the store's size: a View held t seconds
// while writes replace or delete w bytes of records a second pins at most
// about w·t bytes of slots, plus the copied index nodes (at most the whole
// index once). fsm holds a View only while raft persists a snapshot.
package storage
