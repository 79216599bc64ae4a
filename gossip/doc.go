// Package gossip owns cubekv's membership gossip: every node runs one
// memberlist (SWIM) instance that spreads the node's metadata (id, Thrift,
// Raft and admin addresses, version) and detects which nodes are alive,
// failed or gone.
//
// Gossip only reports. It never adds or removes Raft voters: the node package
// merges this view with the Raft configuration to answer topology calls, and
// Raft membership changes remain operator actions. Consumers poll Members;
// there is no event stream.
//
// # Types
//
//   - Gossip (gossip.go): one node's memberlist and its view of the pool.
//     New allocates, Start binds the memberlist listeners and starts the
//     reconnect loop, Join contacts more members, Leave broadcasts a
//     graceful departure, and Shutdown stops everything; Shutdown is
//     idempotent. Members, Member and NumAlive (members.go) read the view;
//     *Gossip satisfies node.Membership.
//   - Config (config.go), DefaultConfig and Validate; the Default constants
//     are the defaults of zero fields.
//   - Meta (meta.go): what a node gossips about itself. Its wire form is a
//     version byte, a flags byte and length-prefixed fields; decoders
//     ignore trailing bytes, so later versions may append fields.
//   - Member and State: one member as the local node sees it.
//   - The keyring operations (keys.go) and LoadKeyFile.
//
// # Concurrency
//
// Every method of Gossip is safe for concurrent use. lifeMu serialises
// Start, Leave and Shutdown and guards the lifecycle state and the
// memberlist; it may be held while calling into memberlist. memberlist's
// callbacks (delegate.go) run under memberlist's own node lock and take only
// mu, which guards the members, the encoded local metadata and the
// advertised address. The lock order is therefore lifeMu, then memberlist's
// locks, then mu, and nothing calls memberlist while holding mu. The
// callbacks only record and log, never block: memberlist's UDP loop waits
// for them. The keyring has its own lock.
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
