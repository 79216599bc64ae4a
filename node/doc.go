// Package node owns the *raft.Raft of one cubekv node and everything around
// it: the raft-boltdb log and stable store (behind a log cache bounded in
// entries and in bytes, logcache.go), file snapshots, bootstrap, Apply, the
// linearizable read index and node status.
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
// (VerifyLeader), checks the term did not change, and waits until the FSM has
// applied idx. Concurrent readers share one verification: a reader joins the
// pending batch, and the batch's commit index is read after every member
// arrived, so each member's read is linearized after its arrival.
package node
