// Package gossip owns cubekv's membership gossip: every node runs one
// memberlist (SWIM) instance that spreads the node's metadata (id, Thrift,
// Raft and admin addresses, version) and detects which
// nodes are alive, failed or gone.
//
// Gossip only reports. It never adds or removes Raft voters: the node package
// merges this view with the Raft configuration to answer topology calls, and
// Raft membership changes remain operator actions.
//
// # Lifecycle
//
// New allocates, Start binds the memberlist listeners and starts the
// reconnect loop, Leave broadcasts a graceful departure, and Shutdown stops
// everything; Shutdown is idempotent.
//
// # Rejoining
//
// memberlist never probes a member it has declared dead, so after a long
// partition or a restart it would stay apart for good. The reconnect loop
// (reconnect.go) joins the seeds (Config.Join and the peers file of members
// last seen alive, never this node's own address) while no other member is
// alive, and at all times every expected member (Config.Expected: kvnode
// passes the nodes of its replicated members table) that is not alive and
// every failed member not yet reaped, each with its own backoff. It logs once
// when a peer becomes unreachable and once when it is reached again.
//
// # Member states
//
// memberlist reports state changes through its EventDelegate, which only
// says "joined", "updated" or "left"; the Node.State field it passes is not
// filled in (memberlist keeps the real state in an unexported field), and the
// suspect state is not reported at all. So this package tracks:
//
//   - StateAlive after a join or an update;
//   - StateLeft when a node that announced its departure goes away: Leave
//     first re-gossips the node's metadata with a "leaving" flag, waits for
//     that broadcast, and only then asks memberlist to leave;
//   - StateDead when a node goes away without that announcement (crash,
//     Shutdown without Leave, partition).
//
// StateSuspect exists for completeness but is never reported: memberlist
// exposes no race-free way to observe it (Members returns pointers into its
// own state, read without its lock). A suspect node is reported as alive
// until memberlist declares it dead. A node that learns of a graceful leave
// only through a later push/pull exchange, without having seen the leaving
// flag, reports it as dead.
//
// Dead and left members stay in Members until memberlist would reap them
// (GossipToTheDeadTime after the change).
//
// # Encryption
//
// With Config.SecretKey set, all gossip is encrypted with AES-GCM and
// unencrypted or differently keyed traffic is rejected. InstallKey, UseKey,
// RemoveKey and ListKeys manage the local keyring for key rotation; rotating
// a whole cluster means running each step on every node before the next.
package gossip
