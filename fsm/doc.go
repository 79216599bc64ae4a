// Package fsm is cubekv's Raft state machine: the command table (each op's
// validation, written keys, size and execution), the log entry codec, the
// raft.FSM (and raft.BatchingFSM) that applies committed entries to a
// storage engine, the request-id table that makes retried writes
// exactly-once, the replicated members table, the bounded change history
// that serves watches, and the snapshot format.
//
// # Log entries
//
// A raft.LogCommand entry's Data is one type byte followed by a Thrift
// compact-protocol struct from thrift/kv.thrift: EntryCommand (1) then a
// kv.Command, or EntryBatch (2) then a kv.CommandBatch whose commands are
// applied in order at the entry's index, each with its own Result. Type 0 is
// invalid. An unknown type with FlagIgnorable (0x80) set is skipped; any other
// unknown type, or a body that does not decode, panics Apply: a node must
// crash rather than diverge. A command that decodes but fails its op's
// validation (an empty key, an unknown op, a CAS without exactly one
// expectation, a txn compare without its operand, ...) is an error Result
// (ErrInvalidCommand) and applies nothing.
//
// # The command table
//
// Everything about a command op lives in its entry of opTable (ops.go),
// indexed by kv.CommandOp:
//
//	validate   the fields the op uses, against Limits; errors are
//	           *CommandError naming the field as the request calls it
//	writeKeys  the keys it may write (a TXN: both branches' PUT and DELETE)
//	size       its estimated bytes in a log entry
//	stamp      what only the proposing node knows (a TXN's answer
//	           budget); optional
//	apply      execute at an index under the write lock; may refuse, and
//	           then changes nothing
//
// Nothing else switches on the op. The front door builds a kv.Command from
// the request, then calls Validate with its limits and Stamp; the leader's
// Internal.apply makes the same calls on a forwarded command with its own
// limits; node's proposer asks WriteKeys (an entry never holds two commands
// that name one key; a LEASE_REVOKE names none, see node/propose.go) and
// Size; Apply validates with applyLimits (the hard
// limits MaxKeySize and MaxValueSize, what a snapshot can hold), then
// applies. A rule has one home, and what a front door accepts Apply
// accepts. Adding an op is an entry here, the op in thrift/kv.thrift and
// the handler that builds it; TestOpTable_EveryOpHasAnEntry fails for an
// op the IDL has and the table lacks.
//
// Apply's validation must accept every command an earlier version applied,
// or an old log would replay differently. Its rules are the ones every
// earlier front door and Internal.apply enforced before proposing, and the
// node's own commands (NOOP, MEMBER_*) are checked as before. Two things
// differ from a front door: Apply has no limit on transaction ops, and a
// request id with a zero client id means no request id, as it always has
// in the log (a front door refuses one). testdata/log-v1.bin, a log the FSM
// before the command table applied, with its results in log-v1.want, pins
// this.
//
// # Answer budget
//
// A transaction's results hold entries whose size depends on the state it
// applies to, so only Apply can measure them. The front door stamps its
// answer budget (max_answer_bytes) into a TXN, the leader lowers it to its
// own, and Apply refuses, before running any op, a transaction whose branch
// would answer with more: ErrAnswerTooLarge, in a *CommandError on
// "success" or "failure". The measure reads only the state at the entry's
// index, so every node refuses alike, and a retry already applied is
// answered from the request-id table without being measured again. An
// entry without the field (every entry written before it existed) is not
// measured and replays as it first applied.
//
// # Determinism
//
// Apply depends only on the state and the entry: no clocks, no randomness,
// no map iteration order. Every key records the index that created it and
// the index that last changed it, and every WriteResult carries the index
// of the entry that applied it.
//
// # Request-id table
//
// A command with a non-zero client_id carries a positive sequence. Per
// client id the FSM remembers the last sequence applied, its WriteResult and
// the index it was last touched at. An equal sequence is answered from the
// table (Result.Duplicate) and applies nothing; a lower one is refused with
// ErrStaleSequence; a higher one is applied and remembered. Commands with an
// error result are not remembered. Eviction is a function of the log only:
// at the start of every command entry, client ids untouched for
// Config.ClientTTL or more indexes are dropped, and after remembering a
// result the least recently touched ids are dropped while more than
// Config.MaxClients remain. Both settings must therefore be equal on every
// node. The table is part of the snapshot.
//
// # Members table
//
// MEMBER_SET commands record a node's Thrift, Raft, gossip and admin
// addresses by node id; MEMBER_REMOVE forgets them. Each node proposes its
// own entry when it joins or its addresses change, and the leader removes a
// node's entry with the node. The table is how nodes find each other's
// front doors for forwarding, the read index and topology, so those work
// while gossip is down or off; gossip only reports liveness. The table is
// part of the snapshot but not of Digest, which covers the key space.
//
// # Change history
//
// The FSM keeps a bounded in-memory record of recent changes of the key
// space, which serves watches (history.go). putKey and deleteKey, the only
// ways an op changes the key space, append one Event per change: a PUT with
// the key, the value and create index as written; a DELETE with the key,
// only when a key was removed (deleting a missing key changes nothing). The
// events lie in one slice in apply order: ascending index, and within an
// index the order the entry's commands and a transaction's ops made them.
// The history shares the decoded command's key and value bytes (fresh
// allocations per entry that nothing modifies afterwards); a DELETE keeps
// a copy of its key, since an engine's returned key may share one
// allocation with the deleted value.
//
// The history covers (floor, applied]: every change at an index in that
// range is in it. It is bounded by Config.HistoryBytes, counting each
// event's key and value plus a fixed 80 bytes; when an append takes it
// over the bound, whole indexes are evicted from the front, oldest first,
// and floor becomes the last evicted index, so the statement stays exact.
// The index being applied is never evicted part way: the history may
// exceed the bound by one entry's changes until the next change. A fresh
// FSM starts at floor 0 (it has applied nothing), and Restore empties the
// history and sets floor to the snapshot's index: a node that restored a
// snapshot, at start or from the leader, knows nothing before it. A
// snapshot at or below the index already applied (a backup restored into a
// running cluster) sets floor one above that index instead: the changes the
// restore undid have no events, so every watch from before it is
// Compacted, and Compacted's current index is never below floor.
//
// Watch answers the events matching a key range above an index, in order.
// With none to answer it registers as a waiter and sleeps; putKey and
// deleteKey wake the waiters a change concerns (a map lookup for one-key
// watches, a range check per prefix or range watch), so a write wakes only
// its watchers, and a woken watch looks only at the events from the index
// of the change that woke it (nothing it watches changed between its
// registration and that change, and the history is never evicted past the
// index being applied): a binary search, then the newer events, under the
// read lock. Registration happens under the read lock right after the look, so
// no change slips between them, and a waiter that is never woken has proof
// that no matching change was applied while it waited: its empty answer at
// the deadline needs no look at the history (eviction meanwhile is no
// loss). An index below floor at a look is ErrCompacted (*CompactedError
// with floor+1 and the greater of the applied index and floor); Restore wakes every waiter, whose
// next look finds the floor moved. An answer may stop at MaxEvents or
// MaxBytes, but only at the end of an index.
//
// The history is not part of the snapshot or of Digest, and its bound may
// differ between nodes: it changes what each node can answer, never what
// Apply does. Its content follows from the log alone (the same entries
// give the same events on every node); only how far back it reaches
// depends on the node's bound and on when it last restored a snapshot.
// # Leases
//
// LEASE_GRANT records a lease whose id is the entry's index, with its TTL;
// a PUT with ttl_ms grants one the same way for its key. An entry must
// therefore hold at most one command that grants (GrantsLease): the
// proposer (node/propose.go) never puts two in one entry. Apply does not
// refuse a second one, so that a log written before that rule replays: the
// second grant replaces the lease's TTL and keeps the keys already attached
// to it, so a lease's Keys is always the number of its attached keys and
// such a log replays to a consistent state, the same in memory and on a
// durable engine reopened (which counts the attachments). PUT, CAS_PUT and
// a TXN's PUT ops may name a lease (lease_id): the key is attached to it,
// and a put without one detaches the key. Attaching and detaching happen in
// putKey and deleteKey, so every delete detaches. A command naming a lease
// that does not exist at its index is refused before anything changes (a
// *CommandError around a *LeaseNotFoundError: ErrLeaseNotFound); a TXN
// checks every PUT of the branch that runs. LEASE_REVOKE deletes the
// lease's keys in ascending key order, then the lease, all at its index.
// The state machine has no clock: the leader decides when a lease runs out
// and proposes its revoke (package lease). The lease limits whose check
// depends on the state, max_leases and max_lease_keys, are stamped into the
// command like the answer budget (ErrLeaseLimit); the TTL bounds are the
// front door's (Validate). Leases are part of the snapshot (version 3, the
// tables are copy-on-write B-trees, so Snapshot copies them in O(1)), not
// of Digest.
//
// # Concurrency
//
// FSM.mu, a sync.RWMutex, guards the engine pointer (and a durable
// engine's staging, Commit and Sync), the request-id table, the members
// table, the lease tables and the change history. Apply takes the write lock once per log entry, so a transaction or
// a batch entry is atomic to readers; Watch, HistoryRange, HistoryBytes, Get, Scan, Len, Bytes, EngineName and
// RememberedClients take the read lock. Snapshot and Digest hold the write lock only
// while they take an engine view (O(1) for the arena and btree engines)
// and copy the request-id table; the snapshot is written and the digest
// hashed from that immutable view, concurrently with Apply. The applied
// index is an atomic.Uint64; WaitApplied blocks on a channel that is closed
// whenever the index advances (no polling).
//
// # Durable engines
//
// With a storage.Durable engine (NewDurable, on a storage.DurableDir) the
// whole state survives a kill -9 without a snapshot restore: the key space
// is the engine's, and the request-id, members and lease tables are kept
// beside it as the engine's meta records, one record per table row:
//
//	"v"                        uvarint 1, the layout version
//	'c' client id (8 bytes BE) uvarint rank, then the snapshot's client
//	                           record after the id: sequence, touched
//	                           index, result length, result
//	'm' node id                the snapshot's member record (five fields)
//	'l' lease id (8 bytes BE)  uvarint TTL in milliseconds
//	'a' lease id (8 bytes BE)  empty: the key after the id is attached to
//	    key                    the lease
//
// A lease's key count is not stored: it is the number of its 'a' records.
// rank orders the request-id table: a counter every touch advances, so the
// records sorted by rank are the table's least-recently-touched order, and
// eviction after a reopen is what it would have been. NewDurable reads the
// records back, checks them (ErrCorruptState), and starts with AppliedIndex
// at the engine's Applied() and the change history empty with its floor
// there.
//
// Batching. Apply stages an entry's key changes in the engine as it runs
// (the engine reads its own staged writes), and the tables record which
// rows changed in dirty sets (nil, and never touched, with an in-memory
// engine: that path encodes and allocates nothing more). At the end of
// ApplyBatch (or Apply) the FSM writes each dirty row's current value, or
// its removal, as a meta record and calls Commit with the index of the
// last entry: the key space, the tables and the applied index reach the
// disk in one atomic batch, so they never disagree. Commit does not sync;
// a crash may lose the last batches, never part of one. A Commit that
// fails panics Apply, as an undecodable entry does: the node stops rather
// than answer from state it cannot keep.
//
// The skip rule. An FSM on a durable engine skips every entry at or below
// its applied index: Apply returns nil for it and changes nothing. After a
// restart the node keeps the engine's state (raft's
// NoSnapshotRestoreOnStart) and raft re-delivers the committed log after
// its latest snapshot, which may begin below what the engine holds. The
// entries the engine holds were applied exactly as they are now
// re-delivered (the same log, and Apply is deterministic), so skipping them
// leaves the state that applying the whole log once gives; the results of
// skipped entries were answered before the crash, or their callers got no
// answer and retry with their request id, which the restored request-id
// table answers. An in-memory FSM has no such entries and applies what it
// is given.
//
// No Raft snapshot while replaying. Raft records a snapshot at the last
// index it delivered to the FSM, skipped entries included. While it
// re-delivers entries the engine holds, the state is further on than that
// index, and an FSM that installed such a snapshot (an in-memory follower,
// or this node switched to an in-memory engine) would apply the entries in
// between a second time. So Snapshot refuses with ErrReplaying until Raft
// has delivered the applied index (delivered, reset by Restore); Raft
// tries again at its next check. A backup (WriteSnapshot) carries its own
// index and is taken at any time.
//
// Snapshot and the log. Snapshot commits what is staged (an ApplyBatch
// may still be running: the lock is per entry, and every entry applied so
// far is whole) and then calls Sync before it takes the view, so a Raft
// snapshot never covers state the engine could lose: raft compacts its
// log up to the snapshot's index, and after a crash the engine holds at
// least the index the snapshot holds, from which on the log re-delivers
// every entry the FSM sees. The snapshot stream is the same format as
// with an in-memory engine, so engines interoperate.
//
// Digest changes nothing: it reads no staged change, commits nothing and
// cannot fail on the engine's account (it runs in a request handler).
// With a durable engine it hashes a view of the committed state (a
// Durable's view never holds staged changes) and returns the index that
// state is at, the Durable's Applied(), which is below AppliedIndex()
// while an ApplyBatch is running or its commit is pending. Two nodes'
// digests are comparable when their indexes are equal, as always.
//
// Restore builds the snapshot in dir.Fresh(): the entries are staged and
// committed every 4 MiB (at index 0: a fresh Durable is nobody's state
// until installed), each with one LoadEntry where the Durable is a
// storage.EntryLoader, else with a Put at its create index and, if it was
// changed since, one at its mod index; then every table row as a meta
// record, then Commit(snapshot index). Under the write lock, dir.Install
// syncs it and makes it current (atomically on disk) and the FSM swaps its
// engine and tables to it. Any error before the swap (corrupt input, a CRC,
// the engine's own, Install's, which it returns only while the old state is
// still current) discards the fresh Durable and leaves the FSM, its engine
// and the directory as they were. Once the new state is current Install
// returns no error; if it cannot make the switch durable it panics, and a
// restart restores raft's snapshot whichever state it finds (the start
// rule, NewDurable).
//
// Why no acknowledged write is lost. A write is acknowledged once Raft
// has committed its entry, that is stored it in the log of a majority;
// the FSM's commit need not be synced for that. On a restart the engine
// holds every entry up to some index at least the FSM's index at raft's
// latest snapshot (Sync before snapshot), and raft re-delivers its log
// from that snapshot's index on: the log is the write-ahead log of the
// engine, and the skip rule makes the replay exact. The node keeps the
// engine only when it holds raft's index of its latest snapshot (see
// NewDurable); otherwise it must let raft restore the snapshot, which is
// correct, only slower. The engine is below that index after a crash while
// a snapshot from the leader or a backup was being installed, or with a
// directory lost or replaced, where the log may not hold what it lacks;
// but also without any crash: raft's LogNoop and LogBarrier entries never
// reach the FSM, so when the last entries before raft's snapshot were
// such (an election's no-op on an idle cluster), the FSM's index stays
// below raft's, and an idle restart restores. To keep the FSM's index
// current the node has the leader apply a NOOP command after it is
// elected.
//
// # Snapshot format, version 3
//
// All fixed-width integers are big-endian; uvarint is encoding/binary's
// unsigned varint.
//
//	magic          8 bytes  "CUBEKVS\x00"
//	version        uint32   3 (Restore also reads 1, which ends after the client
//	                        records, and 2, which ends after the members)
//	applied index  uint64   the Raft index the state reflects
//	entry count    uint64
//	entries, in ascending key order, each:
//	    key length     uvarint  1..65536
//	    key            bytes
//	    create index   uvarint  1..mod index
//	    mod index      uvarint  create index..applied index
//	    value length   uvarint  0..64 MiB
//	    value          bytes
//	client count   uint64   the request-id table
//	client records, least recently touched first, each:
//	    client id      uint64   the int64 client_id, two's complement, non-zero
//	    sequence       uvarint  1..2^63-1
//	    touched index  uvarint  non-decreasing, at most the applied index
//	    result length  uvarint  1..256 MiB
//	    result         bytes    compact-protocol kv.WriteResult
//	member count   uint64   at most 65536 (version 2 only)
//	members, ids strictly ascending, each five fields:
//	    length         uvarint  0..1024 (the id 1..1024)
//	    bytes                   node id, Thrift, Raft, gossip, admin address
//	lease count    uint64   (version 3 only)
//	leases, ids strictly ascending, each:
//	    id             uvarint  1..applied index (the index that granted it)
//	    ttl            uvarint  1..MaxLeaseTTL, milliseconds
//	    key count      uvarint  at most the entry count
//	    keys, strictly ascending, each an entry's key attached to no other lease:
//	        length     uvarint  1..65536
//	        key        bytes
//	crc            uint32   CRC-32C (Castagnoli) of every byte before it
//
// Nothing may follow the CRC. Restore reads the stream into a fresh engine of
// the configured kind and a fresh table, checks every length against its
// cap before allocating, every count, the key order and the CRC, and only
// then swaps the new state in. Any failure returns an error wrapping
// ErrCorruptSnapshot and leaves the FSM as it was. A change to this layout
// takes a new version number; Restore refuses versions it does not know,
// and testdata/snapshot-v1.bin, snapshot-v2.bin and snapshot-v3.bin pin the
// three versions.
package fsm
