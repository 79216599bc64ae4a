/*
 * cubekv public interface.
 *
 * Transport: framed by default (buffered selectable on the server), binary
 * protocol by default (compact selectable). The KV service is served both as
 * the default (non-multiplexed) service and under the multiplexed name "KV",
 * so plain clients in any language work without a TMultiplexedProtocol.
 *
 * Indexes are Raft log indexes. Every key records the index that created it
 * (create_index) and the index that last changed it (mod_index); a key that
 * does not exist has create_index = mod_index = 0.
 *
 * Keys are 1..max_key_size bytes (default 4 KiB); values are 0..max_value_size
 * bytes (default 1 MiB). Larger fields are refused with InvalidArgument before
 * anything is proposed.
 */

/*
 * One namespace per language that Debian's thrift-compiler generates and
 * Debian ships a Thrift library for. They keep generated names out of the
 * global scope; in Ruby that is also what lets the exception Timeout live
 * beside Ruby's own Timeout module (it is Cubekv::Timeout). README.md
 * ("Other languages") and examples/ show each one in use.
 */
namespace go kv
namespace py cubekv.kv
namespace java io.cubekv.kv
namespace cpp cubekv.kv
namespace c_glib Cubekv
namespace rb Cubekv
namespace perl Cubekv
namespace php Cubekv

/** How fresh a read must be. */
enum Consistency {
  /**
   * The default. The read reflects every write acknowledged before it was
   * sent. Served by any node through a Raft read index: the leader confirms
   * its leadership with a quorum, and the serving node waits until its state
   * machine has applied up to the leader's commit index.
   */
  LINEARIZABLE = 1,
  /**
   * Read the serving node's local state at once. May miss recent writes; the
   * answer's ReadInfo says how far behind it may be.
   */
  STALE = 2,
}

/**
 * Identifies a write for exactly-once retries. A client picks a random
 * non-zero client_id and numbers its writes 1, 2, 3, ... with at most one
 * write in flight per client_id (a client wanting concurrency uses several
 * ids). The cluster remembers each client_id's last sequence and its result;
 * a write whose sequence equals the last one returns the remembered result
 * without applying again; a lower sequence is refused with InvalidArgument.
 * Ids idle for a long time (in Raft indexes) are forgotten.
 */
struct RequestID {
  /** Non-zero, chosen at random by the client. */
  1: required i64 client_id,
  /** Positive, increasing per client_id; retries reuse the same value. */
  2: required i64 sequence,
}

/** One key and its metadata. */
struct Entry {
  1: required binary key,
  /** Unset when the request asked for keys only. */
  2: optional binary value,
  /** Raft index of the write that created the key. */
  3: required i64 create_index,
  /** Raft index of the write that last changed the key. */
  4: required i64 mod_index,
  /** The lease the key is attached to (it is deleted when the lease ends); unset: none. */
  5: optional i64 lease_id,
}

/** Where and how a read was served. */
struct ReadInfo {
  /** The node that served the read. */
  1: required string node_id,
  /** The consistency the read was served at. */
  2: required Consistency consistency,
  /** The serving node's applied index when it read. */
  3: required i64 applied_index,
  /**
   * Milliseconds since the serving node last heard from a leader: 0 on the
   * leader, -1 when it has never heard from one. Bounds the staleness of a
   * STALE read.
   */
  4: required i64 last_contact_ms,
}

struct GetRequest {
  1: required binary key,
  /** Unset means LINEARIZABLE. */
  2: optional Consistency consistency,
}

struct GetResponse {
  /** False when the key does not exist. */
  1: required bool found,
  /** The entry, when found. */
  2: optional Entry entry,
  3: required ReadInfo info,
}

struct PutRequest {
  1: required binary key,
  2: required binary value,
  3: optional RequestID request_id,
  /** Return the entry as it was before this write. */
  4: optional bool return_previous,
  /**
   * Attach the key to this lease: the key is deleted when the lease is
   * revoked or expires. The lease must exist (else LeaseNotFound). A put
   * without lease_id or ttl_ms detaches the key from any lease.
   */
  5: optional i64 lease_id,
  /**
   * Grant the key a lease of its own with this TTL, in milliseconds (the
   * lease id is the write's index, returned as lease_id). Not with lease_id.
   */
  6: optional i64 ttl_ms,
}

struct PutResponse {
  /** Raft index the write committed at (the key's new mod_index). */
  1: required i64 index,
  /** The key's create_index after the write. */
  2: required i64 create_index,
  /** The previous entry, when asked for and the key existed. */
  3: optional Entry previous,
  /** The lease the key is attached to after the write; unset: none. */
  4: optional i64 lease_id,
}

struct DeleteRequest {
  1: required binary key,
  2: optional RequestID request_id,
  3: optional bool return_previous,
}

struct DeleteResponse {
  /** Raft index the delete committed at. */
  1: required i64 index,
  /** False when the key did not exist (nothing changed). */
  2: required bool deleted,
  /** The deleted entry, when asked for and the key existed. */
  3: optional Entry previous,
}

/**
 * Compare-and-swap on one key. Exactly one of expected_value and
 * expected_mod_index must be set. expected_mod_index = 0 means "the key must
 * not exist" (create only if absent). With remove = true the key is deleted
 * when the compare holds, and value must be unset.
 */
struct CASRequest {
  1: required binary key,
  /** Holds when the key exists with exactly this value. */
  2: optional binary expected_value,
  /** Holds when the key's mod_index equals this (0: key absent). */
  3: optional i64 expected_mod_index,
  /** The new value; required unless remove is true. */
  4: optional binary value,
  5: optional bool remove,
  6: optional RequestID request_id,
  /** On success, attach the written key to this lease (see PutRequest.lease_id). */
  7: optional i64 lease_id,
}

/**
 * A failed compare is a normal answer: succeeded = false and current holds
 * the key as it is (unset when absent).
 */
struct CASResponse {
  1: required bool succeeded,
  /** Raft index the CAS was decided at, whether or not it succeeded. */
  2: required i64 index,
  /** On success the key as written (unset after a delete); on failure the key as it is. */
  3: optional Entry current,
}

/** A scan page. The range is [start_key, end_key); unset bounds are open. */
struct ScanRequest {
  /** Inclusive lower bound. */
  1: optional binary start_key,
  /** Exclusive upper bound. */
  2: optional binary end_key,
  /** Restrict to keys with this prefix (intersected with start_key/end_key). */
  3: optional binary prefix,
  /** At most this many entries; unset or 0 means the server's max page (default 10,000). */
  4: optional i32 limit,
  5: optional bool keys_only,
  /** Descending key order. */
  6: optional bool reverse,
  7: optional Consistency consistency,
}

struct ScanResponse {
  1: required list<Entry> entries,
  /**
   * Set when more entries may remain. Forward scans: pass it as the next
   * request's start. Reverse scans: pass it as the next request's end_key.
   * Each page is its own read; pages are not one snapshot.
   */
  2: optional binary continuation,
  3: required ReadInfo info,
}

/** What a transaction compare looks at. */
enum CompareTarget {
  /** The value (bytewise); a compare on an absent key's value never holds. */
  VALUE = 1,
  /** The mod_index (0 for an absent key). */
  MOD_INDEX = 2,
  /** The create_index (0 for an absent key). */
  CREATE_INDEX = 3,
  /** Whether the key exists: compare against the exists field. */
  EXISTS = 4,
}

enum CompareOp {
  EQUAL = 1,
  NOT_EQUAL = 2,
  LESS = 3,
  GREATER = 4,
}

/** One condition of a transaction. */
struct Compare {
  1: required binary key,
  2: required CompareTarget target,
  /** Unset means EQUAL. EXISTS allows only EQUAL and NOT_EQUAL. */
  3: optional CompareOp op,
  /** Operand for VALUE. */
  4: optional binary value,
  /** Operand for MOD_INDEX and CREATE_INDEX. */
  5: optional i64 index,
  /** Operand for EXISTS. */
  6: optional bool exists,
}

enum OpType {
  GET = 1,
  PUT = 2,
  DELETE = 3,
}

/** One operation of a transaction branch. */
struct Op {
  1: required OpType type,
  2: required binary key,
  /** Required for PUT, unset otherwise. */
  3: optional binary value,
  /** PUT only: attach the key to this lease (see PutRequest.lease_id). */
  4: optional i64 lease_id,
}

struct OpResult {
  1: required OpType type,
  /** GET: the key exists. PUT: the key existed before. DELETE: a key was deleted. */
  2: required bool found,
  /** GET: the entry. PUT and DELETE: the entry as it was before the op. */
  3: optional Entry entry,
}

/**
 * An atomic transaction, like etcd's Txn: if every compare holds, the success
 * ops run, else the failure ops; all at one Raft index, seen all or nothing.
 */
struct TxnRequest {
  1: required list<Compare> compares,
  2: required list<Op> success,
  3: required list<Op> failure,
  4: optional RequestID request_id,
}

struct TxnResponse {
  /** True when every compare held and the success branch ran. */
  1: required bool succeeded,
  /** Raft index the transaction committed at. */
  2: required i64 index,
  /** One result per op of the branch that ran, in order. */
  3: required list<OpResult> results,
}

/** What a watch event records. */
enum EventType {
  /** The key was written (created or changed). */
  PUT = 1,
  /** The key was deleted. */
  DELETE = 2,
}

/**
 * One change of one key. A transaction's changes share its index and come
 * in the order the transaction made them; so do the deletions of one entry.
 */
struct Event {
  1: required EventType type,
  2: required binary key,
  /** The Raft index of the write that made the change. */
  3: required i64 index,
  /**
   * PUT: the entry as written (value, create_index, mod_index = index);
   * without its value when the request asked for keys only. Unset for DELETE.
   */
  4: optional Entry entry,
}

/**
 * A blocking watch, like Consul's blocking queries: the answer holds the
 * events with index > after_index on the watched keys, in index order, and
 * comes as soon as there is at least one, or when timeout_ms has passed
 * (then with none). Watch with a loop, passing each answer's resume_index as
 * the next after_index: no event is missed or repeated. Name the keys with
 * exactly one of key, prefix, or start_key and end_key (either may be unset:
 * an open bound). Served by any node from its own applied state.
 */
struct WatchRequest {
  /** Watch this one key. */
  1: optional binary key,
  /** Watch every key with this prefix. */
  2: optional binary prefix,
  /** Watch [start_key, end_key): inclusive lower bound. */
  3: optional binary start_key,
  /** Exclusive upper bound. */
  4: optional binary end_key,
  /** Events after this index; 0 is the start of the log. */
  5: optional i64 after_index = 0,
  /**
   * Longest to wait for an event, in milliseconds; 0 answers at once.
   * Unset: the server's default (10 s). The server lowers it to its maximum
   * (--watch-max-timeout, default 60 s).
   */
  6: optional i32 timeout_ms,
  /**
   * At most about this many events; unset or 0: the server's max page
   * (default 10,000). The events of one index (a transaction's changes) are
   * never split: they all come in one answer, even when that exceeds
   * max_events.
   */
  7: optional i32 max_events,
  /**
   * Unset means LINEARIZABLE: the node first waits for a read index, so a
   * watch started after a write was acknowledged anywhere sees it. STALE
   * answers from whatever the node has applied.
   */
  8: optional Consistency consistency,
  /** Leave the values out of PUT events. */
  9: optional bool keys_only,
}

struct WatchResponse {
  /** The events, in index order (and within an index, in the order they were made). */
  1: required list<Event> events,
  /**
   * Pass it as the next request's after_index. Set even when there are no
   * events: the serving node's applied index when it answered; when the
   * answer stopped at max_events or the answer size, the index of the last
   * event returned. Never below the request's after_index.
   */
  2: required i64 resume_index,
  3: required ReadInfo info,
}

/** A node's Raft role. */
enum Role {
  FOLLOWER = 1,
  CANDIDATE = 2,
  LEADER = 3,
  SHUTDOWN = 4,
}

/** One node's view of itself and the cluster. */
struct StatusResponse {
  1: required string node_id,
  2: required Role role,
  3: required i64 term,
  4: required i64 commit_index,
  /** Index the node's state machine has applied. */
  5: required i64 applied_index,
  /** Leader id, empty when none is known. */
  6: required string leader_id,
  /** Leader's Raft address, empty when none is known. */
  7: required string leader_raft_addr,
  /** Number of keys held. */
  8: required i64 keys,
  /** Storage engine name (btree or hash). */
  9: required string engine,
  10: required string version,
  /** Milliseconds since last contact with a leader (0 on the leader, -1 never). */
  11: required i64 last_contact_ms,
  /** Index of the latest snapshot, 0 when none. */
  12: required i64 snapshot_index,
}

/** The request is wrong; nothing was applied. Do not retry it unchanged. */
exception InvalidArgument {
  /** The offending field, e.g. "key" or "txn.success[3].value". */
  1: required string field,
  2: required string reason,
}

/**
 * This node cannot serve the request because it is not the leader and could
 * not forward it. Retry at the leader when one is named. Nothing was applied.
 */
exception NotLeader {
  1: optional string leader_id,
  /** The leader's Thrift address when known. */
  2: optional string leader_addr,
}

/** The node cannot serve now (no quorum, shutting down, catching up). Nothing was applied. */
exception Unavailable {
  1: required string reason,
}

/**
 * The outcome is unknown: the write may or may not have committed. Retry with
 * the same request_id to learn the outcome without applying twice.
 */
exception Timeout {
  1: optional RequestID request_id,
  2: required string reason,
}

/**
 * A watch's after_index is older than the serving node's change history
 * (bounded in bytes; a node also keeps none from before the snapshot it
 * started from), or the changes at index oldest_index - 1 are too large to
 * fit in one answer (a transaction or a lease revoke touching more bytes of
 * keys and values than the node's frame holds). Re-read the watched keys
 * with a LINEARIZABLE scan, which answers at an applied index I of at
 * least current_index, then watch again from after_index = I. Nothing was
 * missed if you do.
 */
exception Compacted {
  /**
   * The oldest index the node's history covers: the smallest after_index
   * it still serves is oldest_index - 1.
   */
  1: required i64 oldest_index,
  /** The node's applied index when it answered. */
  2: required i64 current_index,
}

/**
 * The lease does not exist: it was never granted, was revoked, or expired.
 * A write naming it applied nothing.
 */
exception LeaseNotFound {
  1: required i64 lease_id,
}

/**
 * Leases. A lease has an id (the Raft index of the write that granted it:
 * unique, never reused) and a TTL. Keys attached to it are deleted, all in
 * one Raft entry, when it is revoked or when the leader has not
 * acknowledged a keep_alive for a whole TTL. A lease never ends before its
 * TTL measured from the last acknowledged keep_alive (or from the grant);
 * after a leader change its countdown restarts at the full TTL.
 */
struct LeaseGrantRequest {
  /** The TTL, in milliseconds, within the cluster's bounds. */
  1: required i64 ttl_ms,
  2: optional RequestID request_id,
}

struct LeaseGrantResponse {
  /** The new lease's id: the Raft index that granted it. */
  1: required i64 lease_id,
  2: required i64 ttl_ms,
  /** Raft index the grant committed at (equal to lease_id). */
  3: required i64 index,
}

struct KeepAliveRequest {
  1: required i64 lease_id,
}

struct KeepAliveResponse {
  1: required i64 lease_id,
  /** The lease's TTL: it now lives at least this long unless revoked. */
  2: required i64 ttl_ms,
}

struct LeaseRevokeRequest {
  1: required i64 lease_id,
  2: optional RequestID request_id,
}

struct LeaseRevokeResponse {
  /** Raft index of the entry that deleted the lease and its keys. */
  1: required i64 index,
}

struct LeaseInfoRequest {
  1: required i64 lease_id,
  /** Also return the attached keys. */
  2: optional bool keys,
}

/** A lease as the leader sees it. */
struct LeaseInfo {
  1: required i64 lease_id,
  2: required i64 ttl_ms,
  /**
   * Milliseconds before the leader revokes it unless kept alive; -1 when
   * the leader has already decided to revoke it.
   */
  3: required i64 remaining_ms,
  /** Number of attached keys. */
  4: required i64 key_count,
  /** The attached keys in ascending order, when asked for. */
  5: optional list<binary> keys,
}

struct LeaseListRequest {
  /** Only leases with a larger id (the previous page's continuation). */
  1: optional i64 after_id,
  /** At most this many; unset or 0 means the server's max page. */
  2: optional i32 limit,
}

struct LeaseListResponse {
  /** In ascending id order. */
  1: required list<LeaseInfo> leases,
  /** Set when more leases may remain: pass it as the next after_id. */
  2: optional i64 continuation,
}

service KV {
  GetResponse get(1: GetRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  PutResponse put(1: PutRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout, 5: LeaseNotFound lease_not_found),
  DeleteResponse delete_key(1: DeleteRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  CASResponse cas(1: CASRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout, 5: LeaseNotFound lease_not_found),
  ScanResponse scan(1: ScanRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  TxnResponse txn(1: TxnRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout, 5: LeaseNotFound lease_not_found),
  StatusResponse status(),
  /** Blocks until an event or the timeout; see WatchRequest. */
  WatchResponse watch(1: WatchRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout, 5: Compacted compacted),
  /** Grants a lease. */
  LeaseGrantResponse grant_lease(1: LeaseGrantRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  /**
   * Restarts the lease's countdown at its full TTL. Not a Raft write: the
   * leader records it in memory, after confirming its leadership with a
   * quorum (a follower asks the leader).
   */
  KeepAliveResponse keep_alive(1: KeepAliveRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: LeaseNotFound lease_not_found),
  /** Deletes the lease and every key attached to it, in one Raft entry. */
  LeaseRevokeResponse revoke_lease(1: LeaseRevokeRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout, 5: LeaseNotFound lease_not_found),
  /** The lease as the leader sees it (linearizable). */
  LeaseInfo lease_info(1: LeaseInfoRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: LeaseNotFound lease_not_found),
  /** A page of the leases, as the leader sees them (linearizable). */
  LeaseListResponse list_leases(1: LeaseListRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable),
}

/** A member's vote in Raft. */
enum Suffrage {
  /** Votes and counts toward quorum. */
  VOTER = 1,
  /** Receives the log and serves reads, but does not vote (a read replica, or a new member catching up). */
  NONVOTER = 2,
}

/** A member's liveness as seen by gossip on the serving node. */
enum GossipState {
  ALIVE = 1,
  SUSPECT = 2,
  DEAD = 3,
  /** Left the gossip pool gracefully. */
  LEFT = 4,
  /** In the Raft configuration but never seen in gossip by the serving node. */
  UNKNOWN = 5,
}

/** One node of the cluster, merged from the Raft configuration and gossip. */
struct Member {
  1: required string node_id,
  /** Client-facing Thrift address; empty when not known from gossip. */
  2: required string thrift_addr,
  3: required string raft_addr,
  /** Empty when not known from gossip. */
  4: required string gossip_addr,
  /** Empty when not known from gossip or the node has no admin port. */
  5: required string admin_addr,
  /** Unset when the node gossips but is not in the Raft configuration. */
  6: optional Suffrage suffrage,
  7: required bool leader,
  8: required GossipState gossip_state,
  /** The member's applied index, when the serving node could ask it; -1 otherwise. */
  9: required i64 applied_index,
  /** Milliseconds since the member last heard from a leader (0 on the leader); -1 when unknown. */
  10: required i64 last_contact_ms,
  11: required string version,
}

/** The cluster as one node sees it. */
struct Topology {
  /** Every member, sorted by node_id. */
  1: required list<Member> members,
  /** Empty when no leader is known. */
  2: required string leader_id,
  3: required i64 term,
  /** The node that answered. */
  4: required string served_by,
  /** Raft index of the latest configuration change. */
  5: required i64 config_index,
}

struct AddMemberRequest {
  1: required string node_id,
  /** The new node's Raft address. */
  2: required string raft_addr,
  /** Keep it a non-voting read replica instead of promoting it once caught up. */
  3: optional bool nonvoter,
  /** How long to wait for it to catch up before promoting; unset: 60 s. */
  4: optional i64 catchup_timeout_ms,
}

struct MemberChangeResponse {
  /** Raft index of the configuration change. */
  1: required i64 index,
  /** The member's suffrage after the change (unset after a removal). */
  2: optional Suffrage suffrage,
}

struct RemoveMemberRequest {
  1: required string node_id,
}

struct PromoteMemberRequest {
  1: required string node_id,
  /** How long to wait for it to catch up before promoting; unset: 60 s. */
  2: optional i64 catchup_timeout_ms,
}

struct TransferLeadershipRequest {
  /** The voter to hand leadership to; unset: raft picks the most up-to-date voter. */
  1: optional string node_id,
}

struct TransferLeadershipResponse {
  /** The new leader. */
  1: required string leader_id,
  2: required i64 term,
}

/** A gossip keyring operation. */
enum GossipKeyOp {
  /** Report each node's keys (as fingerprints). */
  LIST = 1,
  /** Add a key that nodes accept but do not yet send with. */
  INSTALL = 2,
  /** Make an installed key the one nodes encrypt with. */
  USE = 3,
  /** Drop a key that is no longer used. */
  REMOVE = 4,
}

struct GossipKeyRequest {
  1: required GossipKeyOp op,
  /** The AES key (16, 24 or 32 bytes); required except for LIST. */
  2: optional binary key,
}

/** One node's keyring after the operation, or why it failed there. */
struct NodeGossipKeys {
  1: required string node_id,
  /**
   * Fingerprints of the node's keys (the first 8 bytes of each key's
   * SHA-256, in hex), the key in use first. Keys themselves never travel.
   */
  2: required list<string> fingerprints,
  /** Set when the operation failed on this node. */
  3: optional string error,
}

struct GossipKeyResponse {
  /** Every alive member's result, sorted by node_id. */
  1: required list<NodeGossipKeys> nodes,
}

/**
 * Cluster membership and topology. Any node answers topology; changes are
 * made by the leader (a follower forwards them once). Gossip only reports
 * liveness: voters change only through these calls.
 */
service Cluster {
  Topology topology()
    throws (1: Unavailable unavailable),
  /**
   * Adds a node as a non-voter, waits until it has caught up with the
   * leader's commit index, then promotes it to voter (unless nonvoter).
   * When catching up times out, the node stays a non-voter and Timeout is
   * raised; promote_member finishes the job.
   */
  MemberChangeResponse add_member(1: AddMemberRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  MemberChangeResponse remove_member(1: RemoveMemberRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  MemberChangeResponse promote_member(1: PromoteMemberRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  TransferLeadershipResponse transfer_leadership(1: TransferLeadershipRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout),
  /**
   * Applies a gossip keyring operation on every alive member (any node
   * answers; it asks each member in turn). Rotation without downtime:
   * INSTALL the new key, USE it, REMOVE the old one.
   */
  GossipKeyResponse gossip_keys(1: GossipKeyRequest req)
    throws (1: InvalidArgument invalid, 2: Unavailable unavailable),
}

struct ReadIndexResponse {
  /** The leader's commit index, confirmed with a quorum after the call began. */
  1: required i64 index,
  2: required i64 term,
}

/** A voter's view of leadership, as it stands when it answers. */
struct LeaderView {
  /** The answering node's current Raft term. */
  1: required i64 term,
  /** The node id of the leader it follows in that term; unset when none is known. */
  2: optional string leader_id,
}

/**
 * Internal: node to node. A follower's front door forwards writes to the
 * leader through apply (once: the leader never forwards again) and asks it
 * for a read index to serve linearizable reads locally. A leader confirms a
 * batch of linearizable reads by asking every voter for its leader_view.
 */
service Internal {
  WriteResult apply(1: Command cmd)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: Timeout timeout, 5: LeaseNotFound lease_not_found),
  ReadIndexResponse read_index()
    throws (1: NotLeader not_leader, 2: Unavailable unavailable),
  /**
   * This node's current term and the leader it follows, read when the call
   * arrives. Answered by any node, whatever its role.
   */
  LeaderView leader_view()
    throws (1: Unavailable unavailable),
  /** Applies a gossip keyring operation on this node only. */
  NodeGossipKeys gossip_keys_local(1: GossipKeyRequest req)
    throws (1: InvalidArgument invalid, 2: Unavailable unavailable),
  /** KV.keep_alive, forwarded by a follower: the leader answers, never forwarding again. */
  KeepAliveResponse keep_alive(1: KeepAliveRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: LeaseNotFound lease_not_found),
  /** KV.lease_info, forwarded by a follower. */
  LeaseInfo lease_info(1: LeaseInfoRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable, 4: LeaseNotFound lease_not_found),
  /** KV.list_leases, forwarded by a follower. */
  LeaseListResponse list_leases(1: LeaseListRequest req)
    throws (1: InvalidArgument invalid, 2: NotLeader not_leader, 3: Unavailable unavailable),
}

/*
 * Internal: the Raft log entry payload. A log entry is one type byte
 * (1 = Command, 2 = CommandBatch; 0 is invalid; bit 0x80 marks a type an
 * older node may ignore) followed by the compact-protocol encoding of the
 * struct. Not part of the client API.
 */

enum CommandOp {
  /** Applies nothing; a new leader commits one to learn its read index. */
  NOOP = 1,
  PUT = 2,
  DELETE = 3,
  /** key, value, and expected_value or expected_mod_index. */
  CAS_PUT = 4,
  /** key, and expected_value or expected_mod_index. */
  CAS_DELETE = 5,
  TXN = 6,
  /** member: record a node's addresses in the replicated members table. */
  MEMBER_SET = 7,
  /** member.node_id: forget a node's addresses (it left the Raft configuration). */
  MEMBER_REMOVE = 8,
  /** ttl_ms: grant a lease whose id is the entry's index. */
  LEASE_GRANT = 9,
  /** lease_id: delete the lease and every key attached to it. */
  LEASE_REVOKE = 10,
}

/**
 * Internal: one node's addresses as kept in the replicated members table,
 * so that forwarding, the read index, status and topology work without
 * gossip. Empty strings mean the node has no such address.
 */
struct MemberAddrs {
  1: required string node_id,
  2: optional string thrift_addr,
  3: optional string raft_addr,
  4: optional string gossip_addr,
  5: optional string admin_addr,
}

struct Command {
  1: required CommandOp op,
  2: optional binary key,
  3: optional binary value,
  4: optional binary expected_value,
  5: optional i64 expected_mod_index,
  6: optional list<Compare> compares,
  7: optional list<Op> success,
  8: optional list<Op> failure,
  9: optional i64 client_id,
  10: optional i64 sequence,
  11: optional bool return_previous,
  /** MEMBER_SET and MEMBER_REMOVE: the member. */
  12: optional MemberAddrs member,
  /**
   * TXN: the most bytes of keys and values the answer may carry, stamped by
   * the front door that built the command and lowered to its own limit by
   * the leader that proposes it. The state machine refuses (applying
   * nothing) a transaction whose answer would carry more. Unset, as in
   * entries written before this field existed: no check.
   */
  13: optional i64 max_answer_bytes,
  /**
   * PUT and CAS_PUT: attach the key to this lease; LEASE_REVOKE: the lease.
   * (A TXN's PUT ops carry their own.)
   */
  14: optional i64 lease_id,
  /** LEASE_GRANT: the TTL; PUT: grant the key a lease of its own at this index. */
  15: optional i64 ttl_ms,
  /**
   * Stamped like max_answer_bytes: the most leases (16) and the most keys
   * per lease (17) the proposing nodes allow. The state machine refuses a
   * command that would exceed them. Unset: no limit.
   */
  16: optional i64 max_leases,
  17: optional i64 max_lease_keys,
}

/** Several commands in one log entry, applied in order, each with its own result. */
struct CommandBatch {
  1: required list<Command> commands,
}

/**
 * Internal: the outcome of one applied Command, as returned to the proposer
 * and remembered in the request-id table (and so in snapshots).
 */
struct WriteResult {
  /** Raft index of the entry that applied the command. */
  1: required i64 index,
  /** PUT/DELETE: the key existed before; CAS/TXN: the compare held. */
  2: required bool succeeded,
  /** PUT/DELETE: the previous entry when asked for; CAS: the current entry. */
  3: optional Entry entry,
  /** TXN: one result per op of the branch that ran. */
  4: optional list<OpResult> results,
  /** PUT: the key's create_index after the write. */
  5: optional i64 create_index,
}
