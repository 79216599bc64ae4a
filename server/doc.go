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
//     the kv.Command, and applies the consistency level each read names.
//   - ClusterHandler implements kv.Cluster (topology, member changes,
//     leadership transfer, cluster-wide gossip key operations) over a
//     ClusterStore, reaching other nodes through a PeerClient.
//   - InternalHandler implements the node-to-node kv.Internal service over
//     a LeaderStore: a forwarded write is applied without forwarding again,
//     and a node answers read-index and leader-view questions.
//   - PeerClient (peer.go) calls other nodes' front doors over a
//     transport.Pool, finding their addresses in a Directory (*node.Node).
//     It implements node.Remote: it forwards a follower's writes and
//     read-index questions to the leader's Internal service and carries a
//     leader's confirmation questions.
//   - Leases (lease.go): grant_lease and revoke_lease are writes;
//     keep_alive, lease_info and list_leases are answered by the leader's
//     lease.Keeper (Store.KeepAlive and so on forward from a follower
//     through PeerClient, which implements node.LeaseRemote over the
//     Internal service's methods of the same names).
//   - Keyring (keyring.go) is the gossip keyring (*gossip.Gossip; nil when
//     gossip is off) behind the gossip key operations.
//   - Watch (watch.go) is KV.watch, a blocking query served from the
//     node's own applied state (Store embeds Watcher): consistency first,
//     then a wait for a matching change bounded by WatchConfig, with at
//     most WatchConfig.MaxWaiting watches at once.
//   - NewProcessor serves the three services on one port: KV as the default
//     service and under its multiplexed name, Cluster and Internal under
//     theirs.
//
// Node-to-wire conversions (status, read info, members, roles, gossip
// states, last contact in milliseconds) are in wire.go, one function each;
// the admin port reuses LastContactMs.
//
// # Errors
//
// Handlers return errors as they were produced: node's and fsm's
// sentinels, wrapped with %w, and their own validation errors. Every
// service method, Cluster and Internal ones included, defers Handler.done,
// which recovers a panic into an internal error (logged, so the node stays
// up and the client gets an answer), maps the error once through the table
// in errors.go, walked with errors.Is, and reports the call to
// Config.Observe. A NotLeader answer carries the leader's Thrift address
// when the Store knows it. An exception a peer answered with (a forwarded
// write's, say) reaches the client as the peer built it.
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
