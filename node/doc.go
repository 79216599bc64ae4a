// Package node owns the *raft.Raft of one cubekv node and everything around
// it: the Raft log and stable store (raft-boltdb or raft-wal, behind a log
// cache bounded in entries and in bytes; logstore.go, logcache.go) and their
// migration, file snapshots, bootstrap, Apply, the linearizable read index
// and node status.
//
// Write path: Apply encodes a kv.Command with fsm.EncodeCommand and hands it
// to raft.Apply; raft batches concurrent entries into one fsync
// (BatchApplyCh) and fsm.FSM applies them through ApplyBatch. Apply has three
// outcomes: a *kv.WriteResult_ (the command was applied, or answered from the
// request-id table), an error meaning "not applied" (ErrNotLeader,
// ErrNoLeader, ErrShutdown before enqueue, ErrUnavailable) and an error
// meaning "outcome unknown" (ErrTimeout: the entry may still commit).
//
// Read path: hashicorp/raft has no ReadIndex API, so node builds one. When a
// node becomes leader it commits a NOOP command of its own term; only then
// is it ready to serve linearizable reads. A NOOP command and not
// raft.Barrier, because the FSM never sees barrier or no-op log entries: by
// committing a command, every commit index this leader later reads names an
// entry that the FSM itself observes (commands and configuration changes), so
// "the FSM has applied index i" is always decidable from fsm.AppliedIndex.
// A read then takes idx := CommitIndex(), confirms leadership with a quorum
// (a round of Remote.LeaderView questions sent after idx was read: a
// majority, this node included, must answer "your term, you"), checks the
// term did not change, and waits until the FSM has applied idx. Concurrent readers share one verification: a reader joins the
// pending batch, and the batch's commit index is read after every member
// arrived, so each member's read is linearized after its arrival.
//
// Data directory: DATA/LOCK (flock, holder's pid; LockDataDir),
// DATA/identity.json (node and cluster id; CheckIdentity, WriteIdentity),
// DATA/raft/raft.db and DATA/raft/snapshots. Preflight checks the Raft
// files read-only before anything starts: raft.db against the log store's
// own consistency check (checkBolt for raft-boltdb; another log store
// brings its own storeChecker), and that some snapshot plus the log after
// it can rebuild the state. Damage is ErrCorruptStore or ErrCannotRebuild,
// with the file and the recovery in the message. Open wraps the stores so
// that failed writes (a full disk) show in StorageError until a write
// succeeds, and the snapshot store so that the temporary folders raft
// leaves after a failed snapshot are removed (snapclean.go).
package node
