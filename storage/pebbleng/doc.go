// Package pebbleng is cubekv's durable storage engine: a storage.Durable on
// a pebble LSM (github.com/cockroachdb/pebble/v2), and a storage.DurableDir
// (Dir) that keeps its state directories under one root and swaps a whole
// new state in atomically. It keeps the applied Raft index in the same
// atomic batch as the data, so a node that restarts opens its state instead
// of restoring a snapshot and replaying the log.
//
// # On-disk format
//
// One pebble DB per state directory, three key spaces told apart by the
// first byte of the pebble key:
//
//	's'          the state record: version byte (1), then little-endian
//	             uint64 applied index, key count (Len), key and value bytes
//	             (Bytes). Every Commit rewrites it in its batch, so the
//	             counters are exact after a reopen.
//	'm' + key    a meta record (SetMeta): the value as given.
//	'k' + key    a user key: uvarint CreateIndex, uvarint ModIndex, value.
//
// A DB without a state record must be empty (nothing was ever committed);
// one with records but none, or a record that does not decode, is
// ErrCorrupt. The DB is created at pebble.FormatNewest of the pinned
// pebble version.
//
// A Dir's root holds state-NNNNNN directories (one pebble DB each) and a
// CURRENT file naming the current one followed by a newline. Install
// writes CURRENT.tmp, syncs it, renames it over CURRENT and syncs the root;
// Fresh syncs the root after creating its directory, so CURRENT never names
// a directory a crash can lose. Open removes the state directories CURRENT
// does not name (left by a crash between Fresh and Install, or by one
// before a replaced state's directory was removed), but only after the
// current state opened. A root without CURRENT never had a current state:
// its leftovers are removed and a first state is made. A CURRENT that does
// not parse or names a missing or unreadable state is ErrCorrupt, and
// nothing is removed.
//
// # Writes and durability
//
// Put, Delete, SetMeta and DeleteMeta stage changes in an overlay, a
// tidwall B-tree of (pebble key, record or deletion). Put and Delete read
// the previous entry first (overlay, then the DB) to return it and keep
// CreateIndex, Len and Bytes. Commit writes the overlay and the state
// record as one pebble batch with pebble.NoSync and clears the overlay: a
// crash keeps a prefix of the committed batches, each whole, because
// pebble's write-ahead log is replayed in order up to its first damaged
// record. Raft's log is cubekv's write-ahead log, so batches are not synced
// one by one; Sync (called before a Raft snapshot, and by Close) writes an
// empty log record with pebble.Sync. Pebble syncs a log up to and including
// the record it was asked to sync, and syncs a log before it rotates to the
// next one (DB.rotateWAL), so this makes every earlier Commit durable. A
// failed Commit or Sync breaks the engine: every later one returns the same
// error (ErrIO).
//
// # Reads
//
// Get and Meta look in the overlay, then the DB; Scan and ScanMeta merge a
// pebble iterator with the overlay in either direction, the overlay winning
// on equal keys and its deletions hiding the DB's records. Get returns
// slices of two new allocations (the prefixed key it looked up and a copy of
// the record) or a staged record's own slices, which are never modified; Scan hands fn slices of the iterator's memory,
// valid until fn returns, so the engine is not a storage.StableScanner. A
// read that fails panics with ErrIO (storage.Durable).
//
// Snapshot takes a pebble snapshot of the committed state, with the
// committed Len and Bytes; changes staged when it is taken are not in it.
// A view's Get and Scan copy every entry they return, so the entries live
// as long as the caller holds them, which covers "until released".
//
// # Locks
//
// The engine itself does no locking for its data: as storage.Engine says,
// the caller serialises mutators (Put, Delete, SetMeta, DeleteMeta,
// Commit, Sync, Close) against each other and against reads, and reads
// (Get, Scan, Len, Bytes, Meta, ScanMeta, Applied, Snapshot) only read the
// overlay and use pebble's concurrency-safe DB. One mutex guards the
// reference count shared by the engine and its views, because views are
// released from any goroutine (raft's snapshot persister, or a cleanup
// when the garbage collector finds a view unreachable): the DB is closed,
// and a replaced state's directory removed, when Close has been called and
// the last view is released. A Dir is used by one goroutine at a time.
//
// # Memory
//
// Options bound pebble's memory: a block cache (32 MiB by default) and
// memtables (2 of 4 MiB), sized for 1-2 GB boards. Every Put reads the
// key's old entry first (Len, Bytes and the create index need it), so a
// put costs a point read as well; the cache is sized to hold the bloom
// filters and index blocks of about 10,000,000 keys (filters alone are
// about 12 MiB there at 10 bits a key), so that such a read costs at most
// the one data block. At 8 MiB a 100,000-key overwrite load read blocks
// from the page cache on most puts (docs/performance.md). The overlay holds one
// batch's changes. Pebble's informational log messages are dropped (they
// name files' key bounds); its errors go to slog.
//
// # Platforms
//
// Pebble builds and this package's tests pass on linux/amd64, linux/arm64
// and linux/arm (ARMv7, 32-bit), with CGO_ENABLED=0.
package pebbleng
