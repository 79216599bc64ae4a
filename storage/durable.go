package storage

// Durable is an Engine that keeps its state on disk and reopens with it
// (the pebble engine). Besides the key space it stores meta records (the
// FSM's request-id, lease and members tables, keyed by the FSM) and the
// Raft index its state was applied up to, so that a restart needs neither
// a snapshot restore nor a replay of what it already holds.
//
// Writes are staged and committed in batches:
//   - Put, Delete, SetMeta and DeleteMeta stage changes in the open batch.
//     Reads through the Durable (Get, Scan, Len, Bytes, Meta, ScanMeta) see
//     the committed state with the staged changes on top, so the FSM reads
//     its own writes before Commit.
//   - Commit(applied) writes every staged change together with applied as
//     one atomic batch. It is not synced: a crash may lose committed
//     batches, but never part of one, and never a batch while keeping a
//     later one.
//   - Sync makes every committed batch durable.
//
// Snapshot (from Engine) is a view of the committed state only; it must not
// be called with changes staged (the caller commits first).
//
// Concurrency: as Engine. Put, Delete, SetMeta, DeleteMeta, Commit, Sync
// and Close are mutators: the caller serialises them with each other and
// with reads. Reads (Get, Scan, Len, Bytes, Meta, ScanMeta, Applied,
// Snapshot) may run concurrently with each other. Views may be read
// concurrently with anything until released.
//
// Errors: Put and Delete cannot report an error (Engine); an I/O failure
// while staging or reading is kept and returned by the next Commit or
// Sync, and a read that fails panics with the error (a node must stop
// rather than answer from a state it cannot read). After Commit or Sync
// fails, the Durable is broken: every later Commit and Sync returns the
// same error, and the caller must stop applying (the FSM panics).
type Durable interface {
	Engine
	// Applied returns the index passed to the last Commit. After a reopen
	// it is the index of the last batch that reached disk: at least that
	// of the last Commit before a successful Sync. 0 for a new engine.
	Applied() uint64
	// SetMeta stages the meta record key = value; DeleteMeta stages its
	// removal. Key and value are copied. Meta keys are a space of their
	// own: they never show in Get, Scan, Len, Bytes or a View's reads.
	SetMeta(key, value []byte)
	DeleteMeta(key []byte)
	// Meta returns the meta record for key, staged or committed. The
	// value is the caller's.
	Meta(key []byte) (value []byte, found bool)
	// ScanMeta calls fn for every meta record whose key starts with
	// prefix, staged or committed, in ascending key order, until fn
	// returns false. The slices are valid only until fn returns.
	ScanMeta(prefix []byte, fn func(key, value []byte) bool)
	// Commit writes everything staged since the last Commit, and applied,
	// as one atomic batch, without syncing it. applied must not be below
	// Applied().
	Commit(applied uint64) error
	// Sync makes every committed batch durable (one fsync of the engine's
	// write-ahead log, or the equivalent).
	Sync() error
	// Close syncs and closes the engine. Views taken earlier stay readable
	// until released; the files are closed when the last one is.
	Close() error
}

// DurableDir manages where a Durable's files live under one root
// directory, so that a restore can build a whole new state beside the
// current one and swap it in atomically.
//
// Concurrency: one goroutine at a time (the FSM calls it under its write
// lock or before it serves).
type DurableDir interface {
	// Open opens the current state under the root, creating an empty one
	// the first time.
	Open() (Durable, error)
	// Fresh returns a new, empty Durable in a directory of its own beside
	// the current one. It is not current until Install.
	Fresh() (Durable, error)
	// Install syncs fresh and makes it the current state atomically (a
	// crash at any moment leaves either the old state or fresh current,
	// whole). The previous Durable is closed once its views are released
	// and its directory is removed.
	Install(fresh Durable) error
	// Discard closes a Fresh Durable that will not be installed and
	// removes its directory.
	Discard(fresh Durable) error
}
