// Package lease is the leader's half of cubekv's leases: the countdowns.
//
// The replicated half lives in fsm: which leases exist, their TTLs and
// their keys, changed only by Raft entries (LEASE_GRANT, LEASE_REVOKE and
// puts naming a lease). When a lease runs out is not replicated. A Keeper
// on the leader holds one deadline per lease in memory, extends it on each
// keep-alive (not a Raft write), and proposes LEASE_REVOKE for leases past
// their deadline. Every node therefore agrees on which keys exist at every
// index, and only the leader's clock decides expiry.
//
// # Rules
//
//   - Promote starts every lease's countdown at its full TTL. The node
//     calls it only once it is leader and has applied an entry of its own
//     term, so a revoke the previous leader left in the log is applied
//     first. A failover therefore never shortens a lease: see
//     docs/architecture.md, "Leases", for the argument.
//   - KeepAlive(id, t0) sets the deadline to max(deadline, t0 + TTL), where
//     t0 is when the request arrived. The caller must have confirmed its
//     leadership with a quorum after t0 and waited until the state machine
//     applied that read index, so the lease's existence is read from a
//     state no older than the request.
//   - Expire proposes a revoke for each lease past its deadline, at most
//     Config.MaxRevokes per call, after marking it expiring: from then on
//     no keep-alive is acknowledged for it. A revoke that definitely did
//     not apply clears the mark (a later keep-alive may save the lease); one
//     whose outcome is unknown keeps it and is proposed again. Once an
//     outcome was unknown the mark stays until this leadership ends: a
//     later proposal that definitely did not apply is proposed again too,
//     since the earlier one may still commit.
//   - Demote forgets every deadline; answers of revokes still in flight
//     are ignored.
//
// Deadlines are kept in a min-heap with one item per lease; a keep-alive
// only moves the deadline later, so the heap is corrected lazily when an
// item comes due. Leases granted while this node leads are found by asking
// the table for ids above the index it last looked at (ids are the
// granting entries' indexes), so each Expire costs O(new leases + due
// items), not O(leases).
//
// # Concurrency
//
// A Keeper's methods are safe for concurrent use; mu guards all its
// state. Table and Revoke are called without holding mu, except that
// Table's reads (which must not block on the Keeper) run under it. Revokes
// run in their own goroutines, bounded by Config.RevokeTimeout; their
// results are dropped once the Keeper is demoted, and Stop demotes and
// waits for them.
package lease
