// Package node is one cubekv Raft member: it owns the *raft.Raft of a node
// and everything Raft needs around it, and offers the rest of the program
// writes, reads at a named consistency, membership changes and status. It
// is the only package that imports hashicorp/raft to run it or to inspect
// its errors; every raft error leaves it as one of node's sentinels
// (errors.go).
//
// # Types
//
//   - Node: New allocates (with its fsm.FSM), Open does the I/O, Close is
//     idempotent. Every exported method is safe for concurrent use once Open
//     has returned.
//   - Config, DefaultConfig and the Default constants in config.go: the one
//     source of every default. A zero field means its Default constant,
//     never hashicorp/raft's own default; raftConfig is the one place
//     Config becomes a raft.Config.
//   - Remote (remote.go) reaches other nodes: a follower forwards writes and
//     asks the leader for a read index through it, and a leader asks voters
//     to confirm its leadership. The front door's peer client implements it.
//   - Membership (membership.go) is the gossip view (*gossip.Gossip) merged
//     with the Raft configuration into the topology.
//   - Observer receives measurements (read-index waits, commands per entry).
//
// # Opening (node.go)
//
// With an in-memory engine New builds the FSM; with EnginePebble Open
// opens it first, from DataDir/state (engine.go), and FSM() is nil until
// then. Open runs four steps: openStores (the Raft log and stable store,
// raft-boltdb or raft-wal behind a log cache bounded in entries and bytes,
// logstore.go and logcache.go, and the file snapshot store, each wrapped so
// a failed write shows in StorageError), openTransport (the TCP stream
// layer of package transport), startRaft, and bootstrap (only when no Raft
// state exists and Bootstrap or InitialCluster asks for it). With a durable
// engine, restoreOnStart decides between openStores and startRaft whether
// raft restores its newest snapshot or keeps the state (engine.go), and
// refuses a state ahead of the log (ErrForeignState). Raft sees the
// log store through a logMeter, which counts the bytes of the entries it
// stores. Open then starts five goroutines: logBudgetLoop (logbudget.go:
// a snapshot once the log since the last one holds SnapshotLogBytes, and
// raft's TrailingLogs lowered to what fits in twice that), watchLeadership
// (readiness.go), the proposer (propose.go), registerLoop (members.go) and
// leaseLoop (lease.go). Close
// shuts Raft down, waits for those goroutines, then closes the transport,
// the stores and the FSM (a durable engine syncs and closes its files).
//
// # Leases (lease.go)
//
// leaseLoop promotes the lease.Keeper once this node is a ready leader
// (readyTerm set: it has applied its own term's NOOP, so revokes the
// previous leader committed are applied), demotes it when readiness ends,
// and calls Expire every LeaseTick. KeepAlive, LeaseInfo and Leases note
// the arrival time, then confirm leadership with ReadIndex and wait for
// the FSM to apply it before asking the Keeper; a follower forwards them
// once through LeaseRemote, like a write.
//
// # Write path (apply.go, propose.go)
//
// Apply hands a kv.Command to the proposer, which coalesces the commands
// waiting when an entry can be proposed into one log entry (a
// kv.CommandBatch when there are several, never two writes of one key),
// with at most MaxInflightEntries entries in flight; raft's BatchApplyCh
// groups entries that arrive together into one fsync. On a follower the
// command fails with a *NotLeaderError before it reaches Raft, and Apply
// forwards it once through Remote; the leader applies it with ApplyLocal and
// never forwards again. Apply has three outcomes: a *kv.WriteResult_ (the
// command was applied, or answered from the request-id table), an error
// meaning "not applied" (ErrNotLeader, ErrNoLeader, ErrShutdown before
// enqueue, ErrUnavailable) and an error meaning "outcome unknown"
// (ErrTimeout: the entry may still commit).
//
// # Read path (read.go, readiness.go, confirm.go)
//
// STALE reads serve local state. LINEARIZABLE reads need a read index, which
// hashicorp/raft does not offer, so node builds one. When a node becomes
// leader it commits a NOOP command of its own term (watchLeadership,
// establish); only then is it ready. A NOOP command and not raft.Barrier,
// because the FSM never sees barrier or no-op log entries: by committing a
// command, every commit index this leader later reads names an entry that
// the FSM itself observes, so "the FSM has applied index i" is always
// decidable from fsm.AppliedIndex. ReadIndex then takes idx :=
// CommitIndex(), confirms leadership with a round of Remote.LeaderView
// questions sent after idx was read (a majority, this node included, must
// answer "your term, you"), checks the term did not change, and returns idx.
// Concurrent readers share one verification: a reader joins the pending
// batch, and the batch's commit index is read after every member arrived,
// so each member's read is linearized after its arrival. leaderReadIndex
// gives any node the leader's read index (a follower asks the leader through
// Remote), and the read waits until the local FSM has applied it.
//
// Watch (watch.go) is a read that waits: it makes the read safe at its
// consistency exactly as Get does, then waits in fsm.FSM.Watch for a
// change it matches, until its wait has passed since the call began.
//
// # Membership (members.go, membership.go)
//
// The replicated members table in the FSM records each node's Thrift, Raft,
// gossip and admin addresses; each node keeps its own entry current, so
// forwarding, the read index and topology work without gossip. Voters change
// only by operator action (AddNonvoter, Promote, RemoveServer,
// TransferLeadership); gossip only reports liveness. SnapshotTo and
// RestoreFrom (backup.go) take and restore backups.
//
// # Concurrency
//
// Fields set by Open (raft, trans, stores, notifyCh, health) are read-only
// afterwards. readyMu guards readyCh, which is closed and replaced whenever
// readyTerm (an atomic) changes, so readers wait on a channel instead of
// polling. readMu guards the pending read batch and whether a verification
// loop runs; asking (confirm.go) has its own lock for the questions in
// flight. The proposer goroutine alone owns the entries in flight; callers
// reach it only through proposeCh. Counters are atomics. Neither readMu nor
// readyMu is held while waiting on Raft, Remote or Membership.
//
// # Data directory
//
// DATA/LOCK (flock, holder's pid; LockDataDir), DATA/identity.json (node and
// cluster id; CheckIdentity, WriteIdentity), DATA/raft/raft.db (or
// DATA/raft/wal/) and DATA/raft/snapshots. Preflight checks the Raft files
// read-only before anything starts: raft.db against the log store's own
// consistency check (checkBolt for raft-boltdb; another log store brings its
// own storeChecker), and that some snapshot plus the log after it can
// rebuild the state. Damage is ErrCorruptStore or ErrCannotRebuild, with the
// file and the recovery in the message. The snapshot store removes the
// temporary folders raft leaves after a failed snapshot (snapclean.go).
// ForceNewCluster (recover.go) and MigrateLogStore (migratelog.go) work on a
// stopped node's directory.
package node
