package node

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Peer is one member of an initial cluster.
type Peer struct {
	ID       string // node id (raft.ServerID)
	RaftAddr string // host:port of its Raft transport
}

// Defaults of the Config fields whose zero value means "the default":
// DefaultConfig, the node itself and kvnode's flags all read them here.
const (
	// DefaultHeartbeatTimeout is Config.HeartbeatTimeout's default.
	DefaultHeartbeatTimeout = time.Second
	// DefaultElectionTimeout is Config.ElectionTimeout's default.
	DefaultElectionTimeout = time.Second
	// DefaultLeaderLeaseTimeout is Config.LeaderLeaseTimeout's default: as
	// long as DefaultHeartbeatTimeout, so a leader starved of CPU for half a
	// second does not step down needlessly.
	DefaultLeaderLeaseTimeout = time.Second
	// DefaultCommitTimeout is Config.CommitTimeout's default.
	DefaultCommitTimeout = 50 * time.Millisecond
	// DefaultMaxAppendEntries is Config.MaxAppendEntries's default.
	DefaultMaxAppendEntries = 64
	// DefaultSnapshotThreshold is Config.SnapshotThreshold's default. It is
	// high because SnapshotLogBytes bounds the log in bytes (logbudget.go):
	// a snapshot rewrites the whole state, which should not happen for every
	// few MB of small entries.
	DefaultSnapshotThreshold = 65536
	// DefaultSnapshotInterval is Config.SnapshotInterval's default.
	DefaultSnapshotInterval = 30 * time.Second
	// DefaultTrailingLogs is Config.TrailingLogs's default: twice the
	// threshold, so the log reaches back to the previous snapshot; twice
	// SnapshotLogBytes bounds it in bytes.
	DefaultTrailingLogs = 2 * DefaultSnapshotThreshold
	// DefaultSnapshotLogBytes is Config.SnapshotLogBytes's default.
	DefaultSnapshotLogBytes = 8 << 20
	// DefaultSnapshotRetain is Config.SnapshotRetain's default.
	DefaultSnapshotRetain = 2
	// DefaultMaxInflightEntries is Config.MaxInflightEntries's default.
	DefaultMaxInflightEntries = 2
	// DefaultMaxEntryBytes is Config.MaxEntryBytes's default.
	DefaultMaxEntryBytes = 1 << 20
	// DefaultLogCacheSize is Config.LogCacheSize's default.
	DefaultLogCacheSize = 512
	// DefaultLogCacheBytes is Config.LogCacheBytes's default.
	DefaultLogCacheBytes = 4 << 20
	// DefaultStoreCheckTimeout is Config.StoreCheckTimeout's default.
	DefaultStoreCheckTimeout = 10 * time.Second
)

// Config configures a Node. A zero duration, count or size takes the
// matching Default constant above (never hashicorp/raft's own default).

type Config struct {
	// ID is the node's identity: the raft.ServerID, the gossip name and the
	// node_id log attribute. Required. It must survive an address change, so
	// it is never derived from an address.
	ID string
	// DataDir holds the Raft log and stable store (raft/raft.db, or raft/wal/
	// with LogStoreKind wal) and raft/snapshots.
	// Required unless LogStore, StableStore and SnapshotStore are all given.
	DataDir string
	// RaftAddr is the host:port the Raft transport listens on. Required
	// unless Transport is given.
	RaftAddr string
	// RaftAdvertise is the address peers dial; empty means RaftAddr. It must
	// not be an unspecified address such as 0.0.0.0.
	RaftAdvertise string
	// ThriftAddr, GossipAddr and AdminAddr are this node's advertised
	// client, gossip and admin addresses. The node records them, with its
	// Raft address, in the replicated members table (see members.go), where
	// every node finds them for forwarding, the read index and topology.
	// Empty: the node has no such address (the table says so); with no
	// ThriftAddr the node records nothing.
	ThriftAddr string
	GossipAddr string
	AdminAddr  string
	// Bootstrap starts a new one-node cluster when DataDir holds no Raft
	// state. Ignored on restart.
	Bootstrap bool
	// InitialCluster, when non-empty, bootstraps a new cluster of exactly
	// these voters (which must include ID) when DataDir holds no Raft state.
	// Every initial member is given the same list. Ignored on restart.
	InitialCluster []Peer
	// Engine is the storage engine kind: "arena", "btree" or "hash" (in
	// memory; empty: storage.KindDefault, arena), or EnginePebble, whose
	// state lives under DataDir/state and is kept across restarts.
	Engine string
	// PebbleCacheBytes and PebbleMemTableBytes size the pebble engine's
	// block cache and its memtables; 0: pebbleng's defaults (for 1-2 GB
	// boards). Only EnginePebble reads them.
	PebbleCacheBytes    int64
	PebbleMemTableBytes uint64
	// WatchHistoryBytes bounds the FSM's change history, which serves
	// watches, in bytes; 0: fsm.DefaultHistoryBytes.
	WatchHistoryBytes int64

	// HeartbeatTimeout is how long a follower waits without contact from the
	// leader before starting an election. 0: DefaultHeartbeatTimeout.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits before a new election.
	// 0: DefaultElectionTimeout.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without contact
	// from a quorum. 0: DefaultLeaderLeaseTimeout. It is capped at the
	// heartbeat timeout, as raft requires.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout bounds how long a follower may not learn the commit index
	// when there is no new entry. 0: DefaultCommitTimeout.
	CommitTimeout time.Duration
	// MaxAppendEntries is the most entries sent in one AppendEntries RPC.
	// 0: DefaultMaxAppendEntries.
	MaxAppendEntries int
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one (checked every SnapshotInterval). 0:
	// DefaultSnapshotThreshold.
	SnapshotThreshold uint64
	// SnapshotInterval is how often the threshold is checked. 0:
	// DefaultSnapshotInterval.
	SnapshotInterval time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot, so
	// a briefly lagging follower catches up without a snapshot, at most: the
	// node keeps fewer when they hold more than 2 x SnapshotLogBytes. 0:
	// DefaultTrailingLogs.
	TrailingLogs uint64
	// SnapshotLogBytes bounds the log in bytes: a snapshot is taken once the
	// entries since the last one hold this much data, however few they are
	// (checked every second; see logbudget.go). 0: DefaultSnapshotLogBytes.
	SnapshotLogBytes int64
	// SnapshotRetain is how many snapshots are kept on disk. 0:
	// DefaultSnapshotRetain.
	SnapshotRetain int
	// MaxInflightEntries is how many coalesced log entries the leader keeps
	// in flight at once; commands arriving meanwhile wait and are coalesced
	// into the next entry. 0: DefaultMaxInflightEntries.
	MaxInflightEntries int
	// MaxEntryBytes bounds the keys and values the proposer coalesces into
	// one log entry beyond its first command (a single larger command still
	// goes alone). 0: DefaultMaxEntryBytes.
	MaxEntryBytes int
	// LogStoreKind is the Raft log and stable store: LogStoreBolt
	// (raft-boltdb, the default when empty) or LogStoreWAL (raft-wal, one
	// fdatasync per append instead of two). Open refuses a data directory
	// that holds the other kind; MigrateLogStore converts one.
	LogStoreKind string
	// LogCacheSize is how many recent log entries are kept in memory in
	// front of the bolt log store. 0: DefaultLogCacheSize.
	LogCacheSize int
	// StoreCheckTimeout bounds the consistency check of the log store file
	// (raft.db) when the node opens it; a check that runs out of time stops
	// and the node starts. 0: DefaultStoreCheckTimeout; negative: no check.
	StoreCheckTimeout time.Duration
	// SkipStartChecks skips Preflight in Open, for a caller that ran it
	// already (kvnode does, before anything else starts).
	SkipStartChecks bool
	// LogCacheBytes bounds the same cache in bytes (entry data plus about
	// 128 bytes each); the oldest entries go first. 0: DefaultLogCacheBytes.
	LogCacheBytes int64

	// Logger receives the node's logs; nil discards them. It should carry
	// the node_id attribute: node adds only component.
	Logger *slog.Logger

	// UnsafeLocalReads serves LINEARIZABLE reads from local state without a
	// read index: deliberately broken, for checking that the fault tests'
	// linearizability checker notices. Validate refuses it unless the
	// binary was built with the canary build tag.
	UnsafeLocalReads bool

	// Observer receives the node's measurements (read-index waits,
	// commands per log entry); nil: none are taken.
	Observer Observer

	// RaftTLS, when set, makes the Raft transport mutual TLS (both roles).
	RaftTLS *tls.Config

	// Membership is the gossip view merged into the topology and used to
	// find other nodes' Thrift addresses; nil: the Raft configuration only.
	Membership Membership
	// Remote reaches the leader from a follower, to forward writes and to
	// get a read index; nil: a follower answers ErrNotLeader instead.
	Remote Remote
	// LeaseRemote reaches the leader from a follower for the lease calls
	// only the leader answers (keep-alive, info, list); nil: a follower
	// answers ErrNotLeader instead.
	LeaseRemote LeaseRemote
	// LeaseTick is how often the leader looks for leases past their
	// deadline. 0: DefaultLeaseTick.
	LeaseTick time.Duration

	// Optional dependencies, for tests and embedding. Each nil field is
	// built by Open from DataDir and RaftAddr.
	Transport     raft.Transport
	LogStore      raft.LogStore
	StableStore   raft.StableStore
	SnapshotStore raft.SnapshotStore
}

// Observer receives measurements from a node. Implementations must be
// cheap and safe for concurrent use; they are called on hot paths.
type Observer interface {
	// ReadIndex reports how long obtaining a read index took, whether it
	// came from the leader over the network, and whether it succeeded.
	ReadIndex(d time.Duration, remote bool, err error)
	// Proposal reports the number of commands a proposed log entry carries.
	Proposal(commands int)
}

// DefaultConfig returns a Config with every tunable at its default. ID,
// DataDir and RaftAddr must still be set.
func DefaultConfig() *Config {
	return &Config{
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		ElectionTimeout:    DefaultElectionTimeout,
		LeaderLeaseTimeout: DefaultLeaderLeaseTimeout,
		CommitTimeout:      DefaultCommitTimeout,
		MaxAppendEntries:   DefaultMaxAppendEntries,
		SnapshotThreshold:  DefaultSnapshotThreshold,
		SnapshotInterval:   DefaultSnapshotInterval,
		TrailingLogs:       DefaultTrailingLogs,
		SnapshotLogBytes:   DefaultSnapshotLogBytes,
		SnapshotRetain:     DefaultSnapshotRetain,
		MaxInflightEntries: DefaultMaxInflightEntries,
		MaxEntryBytes:      DefaultMaxEntryBytes,
		LogCacheSize:       DefaultLogCacheSize,
		LogCacheBytes:      DefaultLogCacheBytes,
		StoreCheckTimeout:  DefaultStoreCheckTimeout,
	}
}

// Validate reports the first invalid field, naming its value.
func (c *Config) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("%w: id is required", ErrBadConfig)
	}
	if c.DataDir == "" && (c.LogStore == nil || c.StableStore == nil || c.SnapshotStore == nil) {
		return fmt.Errorf("%w: data dir is required", ErrBadConfig)
	}
	if c.Transport == nil {
		if c.RaftAddr == "" {
			return fmt.Errorf("%w: raft address is required", ErrBadConfig)
		}
		adv := c.RaftAdvertise
		if adv == "" {
			adv = c.RaftAddr
		}
		host, _, err := net.SplitHostPort(adv)
		if err != nil {
			return fmt.Errorf("%w: raft advertise address %q: %v", ErrBadConfig, adv, err)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("%w: raft advertise address %q is unspecified; set an address peers can dial", ErrBadConfig, adv)
		}
	}
	if c.durable() && c.DataDir == "" {
		return fmt.Errorf("%w: engine %s needs a data dir", ErrBadConfig, EnginePebble)
	}
	if c.PebbleCacheBytes < 0 {
		return fmt.Errorf("%w: negative pebble cache size", ErrBadConfig)
	}
	switch c.LogStoreKind {
	case "", LogStoreBolt, LogStoreWAL:
	default:
		return fmt.Errorf("%w: log store %q is not %s or %s", ErrBadConfig, c.LogStoreKind, LogStoreBolt, LogStoreWAL)
	}
	if c.UnsafeLocalReads && !canaryBuild {
		return fmt.Errorf("%w: unsafe local reads exist only in binaries built with the canary tag", ErrBadConfig)
	}
	if c.Bootstrap && len(c.InitialCluster) > 0 {
		return fmt.Errorf("%w: bootstrap and initial cluster are exclusive", ErrBadConfig)
	}
	if len(c.InitialCluster) > 0 {
		seen := map[string]bool{}
		self := false
		for _, p := range c.InitialCluster {
			if p.ID == "" || p.RaftAddr == "" {
				return fmt.Errorf("%w: initial cluster member %q=%q needs an id and an address", ErrBadConfig, p.ID, p.RaftAddr)
			}
			if seen[p.ID] {
				return fmt.Errorf("%w: initial cluster names %q twice", ErrBadConfig, p.ID)
			}
			seen[p.ID] = true
			self = self || p.ID == c.ID
		}
		if !self {
			return fmt.Errorf("%w: initial cluster does not include this node %q", ErrBadConfig, c.ID)
		}
	}
	if c.HeartbeatTimeout < 0 || c.ElectionTimeout < 0 || c.LeaderLeaseTimeout < 0 || c.CommitTimeout < 0 {
		return fmt.Errorf("%w: negative timeout", ErrBadConfig)
	}
	if c.MaxAppendEntries < 0 || c.MaxAppendEntries > 1024 {
		return fmt.Errorf("%w: max append entries %d not in 0..1024", ErrBadConfig, c.MaxAppendEntries)
	}
	return nil
}

// orDefault returns v when it is positive and def otherwise.
func orDefault[T int | int64 | uint64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

func (c *Config) maxInflight() int { return orDefault(c.MaxInflightEntries, DefaultMaxInflightEntries) }

func (c *Config) maxEntryBytes() int { return orDefault(c.MaxEntryBytes, DefaultMaxEntryBytes) }

func (c *Config) logCacheSize() int { return orDefault(c.LogCacheSize, DefaultLogCacheSize) }

func (c *Config) logCacheBytes() int64 { return orDefault(c.LogCacheBytes, DefaultLogCacheBytes) }

func (c *Config) snapshotLogBytes() int64 {
	return orDefault(c.SnapshotLogBytes, DefaultSnapshotLogBytes)
}

func (c *Config) trailingLogs() uint64 { return orDefault(c.TrailingLogs, DefaultTrailingLogs) }

func (c *Config) snapshotRetain() int { return orDefault(c.SnapshotRetain, DefaultSnapshotRetain) }

// raftConfig maps Config onto raft.Config: the one place that does so. Every
// field raft reads from Config takes its node default when zero, so raft's
// own defaults never apply to them.
func (c *Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.BatchApplyCh = true
	rc.HeartbeatTimeout = orDefault(c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	rc.ElectionTimeout = orDefault(c.ElectionTimeout, DefaultElectionTimeout)
	rc.LeaderLeaseTimeout = orDefault(c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	rc.CommitTimeout = orDefault(c.CommitTimeout, DefaultCommitTimeout)
	rc.MaxAppendEntries = orDefault(c.MaxAppendEntries, DefaultMaxAppendEntries)
	rc.SnapshotThreshold = orDefault(c.SnapshotThreshold, DefaultSnapshotThreshold)
	rc.SnapshotInterval = orDefault(c.SnapshotInterval, DefaultSnapshotInterval)
	rc.TrailingLogs = c.trailingLogs()
	// The lease must not exceed the heartbeat timeout (raft validates it).
	if rc.LeaderLeaseTimeout > rc.HeartbeatTimeout {
		rc.LeaderLeaseTimeout = rc.HeartbeatTimeout
	}
	return rc
}
