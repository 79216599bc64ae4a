package main

import (
	"cmp"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cubekv/cubekv/console"
	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/server"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/pebbleng"
	"github.com/cubekv/cubekv/transport"
)

// config is everything kvnode reads from flags and KVNODE_* variables.
type config struct {
	ID              string
	DataDir         string
	ThriftAddr      string
	RaftAddr        string
	RaftAdvertise   string
	AdminAddr       string
	Bootstrap       string // "auto", "true" or "false"
	InitialCluster  string
	Engine          string
	PebbleCache     int64
	PebbleMemTable  uint64
	LogStore        string
	ThriftAdvertise string
	GossipAddr      string
	GossipAdvertise string
	Join            string
	GossipKeyFile   string

	ThriftTransport string
	ThriftProtocol  string
	MaxFrameSize    int
	MaxConns        int
	IdleTimeout     time.Duration
	ReadTimeout     time.Duration
	RequestTimeout  time.Duration
	MaxKeySize      int
	MaxValueSize    int
	MaxTxnOps       int
	MaxScanPage     int
	MinLeaseTTL     time.Duration
	MaxLeaseTTL     time.Duration
	MaxLeases       int
	MaxLeaseKeys    int

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	MaxAppendEntries   int
	SnapshotThreshold  uint64
	SnapshotInterval   time.Duration
	TrailingLogs       uint64
	SnapshotLogBytes   int64
	MaxEntryBytes      int
	MaxInflight        int

	UnsafeLocalReads bool

	TLSCert           string
	TLSKey            string
	TLSCA             string
	TLSReloadInterval time.Duration

	// certs and metrics are built by run, not read from flags.
	certs   *transport.Certs
	metrics *metrics

	ForceNewCluster bool

	MinFreeSpace      uint64
	LowSpaceWarning   uint64
	StoreCheckTimeout time.Duration

	LogLevel  string
	LogFormat string
	Version   bool

	WatchHistoryBytes int64
	WatchMaxTimeout   time.Duration
	MaxWatches        int

	UIWrite bool
	// front is the Thrift front door's handlers, set by createThriftServer
	// for the web console.
	front console.Front
}

// errUsage marks a bad flag or variable; main exits 2 on it.
var errUsage = errors.New("usage")

// parseConfig reads flags from args, falling back to KVNODE_<FLAG> variables
// from getenv for every flag not given on the command line, then to the
// defaults. The defaults are a single-node cluster on 127.0.0.1.
func parseConfig(args []string, getenv func(string) string) (*config, error) {
	c := &config{}
	nd := node.DefaultConfig()
	sd := transport.DefaultServerConfig()
	fs := flag.NewFlagSet("kvnode", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kvnode [flags]\n       kvnode migrate-log --to wal|bolt --data-dir DIR   (convert a stopped node's Raft log store)\n\nFlags:\n")
		fs.PrintDefaults()
	}

	fs.StringVar(&c.ID, "id", "node1", "node id: the Raft server id and gossip name; keep it stable across address changes")
	fs.StringVar(&c.DataDir, "data-dir", "kvnode-data", "directory for the Raft log, stable store and snapshots")
	fs.StringVar(&c.ThriftAddr, "thrift-addr", "127.0.0.1:9090", "host:port of the Thrift front door")
	fs.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:9091", "host:port the Raft transport listens on")
	fs.StringVar(&c.RaftAdvertise, "raft-advertise", "", "Raft address peers dial (default: --raft-addr)")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:9092", "host:port of the admin HTTP server (/health, /ready, /status, /debug/pprof); empty disables it")
	fs.StringVar(&c.Bootstrap, "bootstrap", "auto", "start a new one-node cluster when the data dir is empty: true, false, or auto (true unless --initial-cluster or --join is given)")
	fs.StringVar(&c.InitialCluster, "initial-cluster", "", "id=host:raftport,... : bootstrap a new cluster of exactly these voters (the same list on every member)")
	fs.StringVar(&c.Engine, "engine", storage.KindDefault, "storage engine: arena (size-bucketed slabs, the smallest), btree or hash, in memory (a restart restores the latest snapshot and replays the log), or pebble, on disk under <data-dir>/state (a restart opens it)")
	fs.Int64Var(&c.PebbleCache, "pebble-cache-bytes", pebbleng.DefaultCacheBytes, "pebble engine: block cache size in bytes")
	fs.Uint64Var(&c.PebbleMemTable, "pebble-memtable-bytes", pebbleng.DefaultMemTableBytes, "pebble engine: size of one memtable in bytes (two at most)")
	fs.StringVar(&c.LogStore, "log-store", node.LogStoreBolt, "Raft log store: bolt (raft-boltdb, raft/raft.db) or wal (raft-wal, raft/wal/: one fsync per append instead of two); change it on a stopped node with kvnode migrate-log")
	fs.StringVar(&c.ThriftAdvertise, "thrift-advertise", "", "Thrift address other nodes and clients dial (default: --thrift-addr)")
	fs.StringVar(&c.GossipAddr, "gossip-addr", "127.0.0.1:9093", "ip:port for gossip (memberlist, TCP and UDP); empty disables gossip")
	fs.StringVar(&c.GossipAdvertise, "gossip-advertise", "", "gossip address other nodes dial (default: --gossip-addr)")
	fs.StringVar(&c.Join, "join", "", "host:gossipport,... of existing members to join the gossip pool")
	fs.StringVar(&c.GossipKeyFile, "gossip-key-file", "", "file holding a base64 AES key (16, 24 or 32 bytes) that encrypts gossip")

	fs.StringVar(&c.ThriftTransport, "thrift-transport", "framed", "Thrift transport: framed or buffered")
	fs.StringVar(&c.ThriftProtocol, "thrift-protocol", "binary", "Thrift protocol: binary or compact")
	fs.IntVar(&c.MaxFrameSize, "max-frame-size", int(sd.MaxFrameSize), "largest Thrift frame or message accepted, in bytes")
	fs.IntVar(&c.MaxConns, "max-conns", sd.MaxConns, "most open client connections; more are closed at once")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", sd.IdleTimeout, "close a client connection idle this long")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", sd.ReadTimeout, "a request must arrive whole within this once it starts")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 5*time.Second, "longest a request may wait in the node (commit or read index)")
	fs.IntVar(&c.MaxKeySize, "max-key-size", server.DefaultMaxKeySize, "largest key, in bytes")
	fs.IntVar(&c.MaxValueSize, "max-value-size", server.DefaultMaxValueSize, "largest value, in bytes")
	fs.IntVar(&c.MaxTxnOps, "max-txn-ops", server.DefaultMaxTxnOps, "most compares, and most ops per branch, in a transaction")
	fs.IntVar(&c.MaxScanPage, "max-scan-page", server.DefaultMaxScanPage, "most entries one scan returns")
	fs.DurationVar(&c.MinLeaseTTL, "min-lease-ttl", server.DefaultMinLeaseTTL, "shortest lease TTL a client may ask for")
	fs.DurationVar(&c.MaxLeaseTTL, "max-lease-ttl", server.DefaultMaxLeaseTTL, "longest lease TTL a client may ask for")
	fs.IntVar(&c.MaxLeases, "max-leases", server.DefaultMaxLeases, "most leases the cluster holds; a grant beyond is refused")
	fs.IntVar(&c.MaxLeaseKeys, "max-lease-keys", server.DefaultMaxLeaseKeys, "most keys attached to one lease")

	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", nd.HeartbeatTimeout, "follower timeout without leader contact before an election")
	fs.DurationVar(&c.ElectionTimeout, "election-timeout", nd.ElectionTimeout, "candidate timeout before a new election")
	fs.DurationVar(&c.LeaderLeaseTimeout, "leader-lease-timeout", nd.LeaderLeaseTimeout, "leader steps down without quorum contact for this long")
	fs.IntVar(&c.MaxAppendEntries, "max-append-entries", nd.MaxAppendEntries, "most log entries per AppendEntries RPC")
	fs.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", nd.SnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.DurationVar(&c.SnapshotInterval, "snapshot-interval", nd.SnapshotInterval, "how often the snapshot threshold is checked")
	fs.IntVar(&c.MaxInflight, "max-inflight-entries", nd.MaxInflightEntries, "coalesced log entries the leader keeps in flight at once")
	fs.IntVar(&c.MaxEntryBytes, "max-entry-bytes", nd.MaxEntryBytes, "most bytes of keys and values coalesced into one log entry (a single larger command still goes alone)")
	fs.Uint64Var(&c.TrailingLogs, "trailing-logs", nd.TrailingLogs, "log entries kept after a snapshot for lagging followers, at most (fewer when they hold more than 2 x --snapshot-log-bytes)")
	fs.Int64Var(&c.SnapshotLogBytes, "snapshot-log-bytes", nd.SnapshotLogBytes, "bytes of log entries since the last snapshot that trigger a new one, however few the entries (bounds raft.db and a restart's replay); with --engine pebble at least a quarter of the state's bytes, up to 256 MiB")

	fs.StringVar(&c.TLSCert, "tls-cert", "", "node certificate (PEM): with --tls-key and --tls-ca, mutual TLS on the Raft, Thrift and admin ports")
	fs.StringVar(&c.TLSKey, "tls-key", "", "private key of --tls-cert (PEM)")
	fs.StringVar(&c.TLSCA, "tls-ca", "", "CA certificate (PEM): peers and clients must present a certificate it signed")
	fs.DurationVar(&c.TLSReloadInterval, "tls-reload-interval", 10*time.Second, "how often the TLS files are checked for changes (SIGHUP reloads at once)")
	fs.BoolVar(&c.UnsafeLocalReads, "unsafe-local-reads", false, "TESTING ONLY: serve linearizable reads without a read index (refused unless built with -tags canary)")
	fs.Uint64Var(&c.MinFreeSpace, "min-free-space", 32<<20, "refuse to start when the data dir's file system has fewer free bytes than this (0: no check)")
	fs.Uint64Var(&c.LowSpaceWarning, "low-space-warning", 256<<20, "log a warning and set cubekv_disk_low_space when the data dir's free bytes fall below this (0: never)")
	fs.DurationVar(&c.StoreCheckTimeout, "store-check-timeout", nd.StoreCheckTimeout, "longest the consistency check of raft.db may take at start (it stops there and the node starts; negative: skip it)")
	fs.BoolVar(&c.ForceNewCluster, "force-new-cluster", false, "recovery after losing a majority for good: make this stopped node the only voter of its data, then exit (start it normally afterwards)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")

	fs.Int64Var(&c.WatchHistoryBytes, "watch-history-bytes", fsm.DefaultHistoryBytes, "bytes of recent changes kept in memory to serve watches (keys, values and ~80 bytes each); a watch from an older index gets Compacted")
	fs.DurationVar(&c.WatchMaxTimeout, "watch-max-timeout", server.DefaultWatchMaxTimeout, "longest a watch waits for an event (a larger timeout_ms is lowered)")
	fs.IntVar(&c.MaxWatches, "max-watches", server.DefaultMaxWatches, "most watches waiting at once; each holds a connection (keep it below --max-conns)")

	fs.BoolVar(&c.UIWrite, "ui-write", false, "let the web console on the admin port (/ui/) create, edit and delete keys; without it the console is read-only")

	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil {
			return
		}
		name := "KVNODE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%w: %s=%q: %v", errUsage, name, v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	switch c.Bootstrap {
	case "auto", "true", "false":
	default:
		return nil, fmt.Errorf("%w: --bootstrap must be true, false or auto, got %q", errUsage, c.Bootstrap)
	}
	return c, nil
}

// validate checks every derived configuration without starting anything.
func (c *config) validate() error {
	if _, err := c.nodeConfig(); err != nil {
		return err
	}
	if _, err := c.serverConfig(); err != nil {
		return err
	}
	if _, err := c.handlerConfig(); err != nil {
		return err
	}
	if c.GossipAddr != "" && c.ThriftAdvertise == "" {
		host, _, err := net.SplitHostPort(c.ThriftAddr)
		if err != nil {
			return fmt.Errorf("%w: --thrift-addr %q: %v", errUsage, c.ThriftAddr, err)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return fmt.Errorf("%w: --thrift-addr %q is unspecified; set --thrift-advertise to an address other nodes and clients can dial", errUsage, c.ThriftAddr)
		}
	}
	return nil
}

// tlsConfig is the mutual TLS configuration for the Thrift and admin ports
// and outgoing connections, nil when TLS is off.
func (c *config) tlsConfig() *tls.Config {
	if c.certs == nil {
		return nil
	}
	return c.certs.TLSConfig()
}

// joinList splits --join.
func (c *config) joinList() []string {
	var out []string
	for _, a := range strings.Split(c.Join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// thriftAdvertise is the Thrift address gossiped to others.
func (c *config) thriftAdvertise() string {
	if c.ThriftAdvertise != "" {
		return c.ThriftAdvertise
	}
	return c.ThriftAddr
}

// parseInitialCluster parses "id=host:port,id=host:port".
func parseInitialCluster(s string) ([]node.Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []node.Peer
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%w: --initial-cluster entry %q is not id=host:port", errUsage, part)
		}
		peers = append(peers, node.Peer{ID: id, RaftAddr: addr})
	}
	return peers, nil
}

// nodeConfig turns the flags into node.Config: the only place that does.
func (c *config) nodeConfig() (*node.Config, error) {
	peers, err := parseInitialCluster(c.InitialCluster)
	if err != nil {
		return nil, err
	}
	nc := node.DefaultConfig()
	nc.ID = c.ID
	nc.DataDir = c.DataDir
	nc.RaftAddr = c.RaftAddr
	nc.RaftAdvertise = c.RaftAdvertise
	nc.ThriftAddr = c.thriftAdvertise()
	nc.AdminAddr = c.AdminAddr
	if c.GossipAddr != "" {
		nc.GossipAddr = cmp.Or(c.GossipAdvertise, c.GossipAddr)
	}
	nc.InitialCluster = peers
	nc.Bootstrap = c.Bootstrap == "true" || (c.Bootstrap == "auto" && len(peers) == 0 && c.joinList() == nil)
	nc.Engine = c.Engine
	if c.PebbleCache <= 0 || c.PebbleMemTable == 0 {
		return nil, fmt.Errorf("%w: --pebble-cache-bytes and --pebble-memtable-bytes must be positive", errUsage)
	}
	nc.PebbleCacheBytes = c.PebbleCache
	nc.PebbleMemTableBytes = c.PebbleMemTable
	if c.WatchHistoryBytes <= 0 {
		return nil, fmt.Errorf("%w: --watch-history-bytes must be positive, got %d", errUsage, c.WatchHistoryBytes)
	}
	nc.WatchHistoryBytes = c.WatchHistoryBytes
	nc.LogStoreKind = c.LogStore
	nc.UnsafeLocalReads = c.UnsafeLocalReads
	nc.HeartbeatTimeout = c.HeartbeatTimeout
	nc.ElectionTimeout = c.ElectionTimeout
	nc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	nc.MaxAppendEntries = c.MaxAppendEntries
	nc.SnapshotThreshold = c.SnapshotThreshold
	nc.SnapshotInterval = c.SnapshotInterval
	nc.TrailingLogs = c.TrailingLogs
	if c.SnapshotLogBytes <= 0 || c.SnapshotLogBytes > 1<<40 {
		return nil, fmt.Errorf("%w: --snapshot-log-bytes must be between 1 and 1 TiB, got %d", errUsage, c.SnapshotLogBytes)
	}
	nc.SnapshotLogBytes = c.SnapshotLogBytes
	nc.StoreCheckTimeout = c.StoreCheckTimeout
	if c.MaxEntryBytes <= 0 {
		return nil, fmt.Errorf("%w: --max-entry-bytes must be positive, got %d", errUsage, c.MaxEntryBytes)
	}
	nc.MaxEntryBytes = c.MaxEntryBytes
	if c.MaxInflight <= 0 || c.MaxInflight > 64 {
		return nil, fmt.Errorf("%w: --max-inflight-entries %d not in 1..64", errUsage, c.MaxInflight)
	}
	nc.MaxInflightEntries = c.MaxInflight
	if err := nc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return nc, nil
}

// serverConfig turns the flags into the Thrift server's transport config.
func (c *config) serverConfig() (*transport.ServerConfig, error) {
	sc := transport.DefaultServerConfig()
	sc.Addr = c.ThriftAddr
	sc.Transport = c.ThriftTransport
	sc.Protocol = c.ThriftProtocol
	if c.MaxFrameSize <= 0 || c.MaxFrameSize > 1<<30 {
		return nil, fmt.Errorf("%w: --max-frame-size %d not in 1..1073741824", errUsage, c.MaxFrameSize)
	}
	sc.MaxFrameSize = int32(c.MaxFrameSize)
	sc.MaxConns = c.MaxConns
	sc.IdleTimeout = c.IdleTimeout
	sc.ReadTimeout = c.ReadTimeout
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return sc, nil
}

// handlerConfig turns the flags into the front door's limits.
func (c *config) handlerConfig() (server.Config, error) {
	for _, l := range []struct {
		name string
		v    int
	}{{"max-key-size", c.MaxKeySize}, {"max-value-size", c.MaxValueSize}, {"max-txn-ops", c.MaxTxnOps}, {"max-scan-page", c.MaxScanPage},
		{"max-leases", c.MaxLeases}, {"max-lease-keys", c.MaxLeaseKeys}} {
		if l.v <= 0 {
			return server.Config{}, fmt.Errorf("%w: --%s must be positive, got %d", errUsage, l.name, l.v)
		}
	}
	if c.MinLeaseTTL < time.Millisecond || c.MaxLeaseTTL < c.MinLeaseTTL || c.MaxLeaseTTL.Milliseconds() > fsm.MaxLeaseTTL {
		return server.Config{}, fmt.Errorf("%w: need 1ms <= --min-lease-ttl %v <= --max-lease-ttl %v <= %v", errUsage, c.MinLeaseTTL, c.MaxLeaseTTL, time.Duration(fsm.MaxLeaseTTL)*time.Millisecond)
	}
	if c.MaxKeySize > fsm.MaxKeySize {
		return server.Config{}, fmt.Errorf("%w: --max-key-size %d exceeds the state machine's limit of %d", errUsage, c.MaxKeySize, fsm.MaxKeySize)
	}
	if c.MaxValueSize > fsm.MaxValueSize {
		return server.Config{}, fmt.Errorf("%w: --max-value-size %d exceeds the state machine's limit of %d", errUsage, c.MaxValueSize, fsm.MaxValueSize)
	}
	if c.WatchMaxTimeout <= 0 || c.MaxWatches <= 0 {
		return server.Config{}, fmt.Errorf("%w: --watch-max-timeout (%s) and --max-watches (%d) must be positive", errUsage, c.WatchMaxTimeout, c.MaxWatches)
	}
	// An answer holds at most MaxResponseBytes of keys and values plus
	// framing; a single maximal entry must fit in it.
	respBytes := c.MaxFrameSize / 2
	if c.MaxValueSize+c.MaxKeySize+4096 > respBytes {
		return server.Config{}, fmt.Errorf("%w: --max-value-size %d plus --max-key-size %d must fit in half of --max-frame-size %d", errUsage, c.MaxValueSize, c.MaxKeySize, c.MaxFrameSize)
	}
	return server.Config{
		Limits: server.Limits{
			MaxKeySize:   c.MaxKeySize,
			MaxValueSize: c.MaxValueSize,
			MaxTxnOps:    c.MaxTxnOps,
			MaxScanPage:  c.MaxScanPage,
			// Half the frame leaves room for the rest of the answer.
			MaxResponseBytes: respBytes,
			MinLeaseTTL:      c.MinLeaseTTL,
			MaxLeaseTTL:      c.MaxLeaseTTL,
			MaxLeases:        c.MaxLeases,
			MaxLeaseKeys:     c.MaxLeaseKeys,
		},
		RequestTimeout: c.RequestTimeout,
		Version:        version,
		Watch: server.WatchConfig{
			MaxTimeout: c.WatchMaxTimeout,
			MaxWaiting: c.MaxWatches,
		},
	}, nil
}

// migrateConfig is what kvnode migrate-log reads.
type migrateConfig struct {
	DataDir string
	To      string
}

// parseMigrateConfig reads the flags of kvnode migrate-log, falling back to
// KVNODE_DATA_DIR (the variable the node itself reads) for --data-dir.
func parseMigrateConfig(args []string, getenv func(string) string) (*migrateConfig, error) {
	c := &migrateConfig{}
	fs := flag.NewFlagSet("kvnode migrate-log", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&c.DataDir, "data-dir", "", "data directory of the stopped node (default: $KVNODE_DATA_DIR)")
	fs.StringVar(&c.To, "to", "", "log store to convert to: wal or bolt")
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if c.DataDir == "" {
		c.DataDir = getenv("KVNODE_DATA_DIR")
	}
	if c.DataDir == "" {
		return nil, fmt.Errorf("%w: migrate-log needs --data-dir", errUsage)
	}
	if c.To != node.LogStoreWAL && c.To != node.LogStoreBolt {
		return nil, fmt.Errorf("%w: --to must be %s or %s, got %q", errUsage, node.LogStoreWAL, node.LogStoreBolt, c.To)
	}
	return c, nil
}
