// Package server is cubekv's Thrift front door: it turns the Thrift services
// declared in thrift/kv.thrift into calls on a node, and node errors into
// the exceptions clients see. It owns no Raft state and no connections of
// its own (package transport serves and dials them).
//
// # Types
//
//   - Handler implements the generated kv.KV service over a Store (a
//     consumer-side interface that *node.Node satisfies): it checks every
//     request against Config.Limits before anything is proposed, builds
//     the kv.Command, applies the consistency level each read names, and
//     reports every request to Config.Observe.
//   - ClusterHandler implements kv.Cluster (topology, member changes,
//     leadership transfer, cluster-wide gossip key operations) over a
//     ClusterStore, reaching other nodes through Peers.
//   - InternalHandler implements the node-to-node kv.Internal service over
//     a LeaderStore: a forwarded write is applied without forwarding again,
//     and a node answers read-index and leader-view questions.
//   - The peer client implements node.Remote over a transport.Pool: it
//     forwards a follower's writes and read-index questions to the leader's
//     Internal service and carries a leader's confirmation questions.
//   - Keyring is the gossip keyring (*gossip.Gossip; nil when gossip is
//     off) behind the gossip key operations.
//   - NewProcessor serves the three services on one port: KV as the default
//     service and under its multiplexed name, Cluster and Internal under
//     theirs.
//
// # Errors
//
// Node and validation errors are sentinels; they become Thrift exceptions in
// one place, the table in errors.go, walked with errors.Is. A NotLeader
// answer carries the leader's Thrift address when it is known
// (Config.LeaderAddr). A handler panic is recovered into an internal error
// and logged, so the node stays up and the client gets an answer.
//
// # Concurrency
//
// The handlers hold no mutable state after construction (their
// configuration is read-only), so they are safe for concurrent use: the
// Thrift server calls them from one goroutine per connection. Each request
// is bounded by Config.RequestTimeout unless the caller's deadline is
// shorter. Blocking happens only in the Store (waiting for a commit or a
// read index) and in calls to other nodes.
package server
