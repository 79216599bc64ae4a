// Package client is the Go client for cubekv: it routes each request to the right node of a
// cluster, retries it until the caller's deadline, and maps the Thrift exceptions to errors callers
// test with errors.Is and errors.As.
//
// # Types
//
//   - Client (client.go, cluster.go): New only allocates, connections are made on first use, and
//     Close is idempotent. Get, Put, Delete, CAS, Scan and Txn serve the key space; Topology,
//     AddMember, RemoveMember, PromoteMember, TransferLeadership and GossipKeys operate the cluster.
//   - Config: the seed endpoints, dial settings (transport.DialConfig), retry and topology timings,
//     the default consistency, and whether reads spread over the members.
//   - Watch (watch.go) delivers every change of a key or prefix on a channel (WatchEvent), moving
//     to another member when one fails and resuming after the last index delivered; WatchOption
//     adjusts it. A WatchResync event reports changes no node still holds.
//   - Leases (lease.go): Grant, KeepAlive, KeepAliveLoop, Revoke, LeaseInfo and Leases; Put takes
//     WithLease or WithTTL, a CASRequest its LeaseID. ErrLeaseNotFound (LeaseNotFoundError) means
//     the lease is gone.
//   - Lock (lock.go): Lock and Campaign acquire a lock or an election on a lease and a
//     create-if-absent CAS, waiting by polling with backoff; each acquisition's fencing token is the
//     lock key's create index, which a protected resource must check (see lock.go).
//   - ReadOption and WriteOption (options.go) adjust one call.
//   - The errors (errors.go): ErrNotLeader, ErrUnavailable, ErrInvalidArgument, ErrTimeout,
//     ErrUnknownOutcome, ErrClosed and ErrLeaseNotFound, with NotLeaderError, InvalidArgumentError and
//     UnknownOutcomeError carrying the details.
//   - Package clienttest provides an in-process fake node and cluster for tests of code built on
//     the client.
//
// # Routing (route.go)
//
// All routing decisions are in route.go. From any one seed endpoint the client learns the topology
// (Cluster.topology) and keeps a cached view of it, refreshed when a request fails and when it grows
// old. Writes and cluster changes go to the leader (following NotLeader redirects); STALE reads go to
// the node asked (the first endpoint that answers) unless Config.SpreadStaleReads spreads them
// round-robin over the alive members, and LINEARIZABLE reads go to the leader unless
// Config.SpreadLinearizableReads spreads them.
//
// # Retries and exactly-once writes
//
// Retries back off exponentially with jitter and are bounded by the caller's deadline, not by a
// count (unless Config.MaxRetries sets one), so a request outlasts an election. Every write carries
// a kv.RequestID taken from a pool of sessions (session.go), and every retry of a write reuses it,
// so the cluster applies it once. A session carries one write at a time; one whose last write has
// an unknown outcome is dropped rather than reused. A write whose every attempt may have committed
// fails with ErrUnknownOutcome.
//
// # Concurrency
//
// A Client is safe for concurrent use. Each call borrows a pooled connection (transport.Pool) and
// each write a session of its own. The router's mutex guards the cached view, the known leader and
// the refresh state; at most one topology refresh is in flight, in the background, and it ends when
// the Client is closed. The session pool has its own mutex. No lock is held during network calls.
package client
