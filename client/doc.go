// Package client is the Go client for cubekv. It owns routing requests to the cluster: from any one
// seed endpoint it learns the topology (Cluster.topology) and keeps a cached view of it, refreshed
// when a request fails and when it grows old; writes and cluster changes go straight to the leader
// (following NotLeader redirects), STALE reads go to the node asked (the first endpoint that answers)
// unless Config.SpreadStaleReads spreads them round-robin over the alive members, and LINEARIZABLE
// reads go to the leader unless Config.SpreadLinearizableReads spreads them. It also owns retries
// with exponential backoff and jitter, bounded by the caller's deadline and not by a count (so a
// request outlasts an election), exactly-once writes
// (every write carries a kv.RequestID taken from a pool of sessions, and every retry of a write
// reuses it), the cluster operations (AddMember, RemoveMember, PromoteMember, TransferLeadership),
// and the mapping of the Thrift exceptions to the errors callers test with errors.Is and errors.As.
// All routing decisions are in route.go.
package client
