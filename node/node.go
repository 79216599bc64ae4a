package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/transport"
)

// Node is one cubekv Raft member. New allocates, Open does I/O, Close is
// idempotent.
type Node struct {
	cfg    Config
	base   *slog.Logger // the caller's logger; components derive from it
	logger *slog.Logger
	fsm    *fsm.FSM

	// Set by Open, read-only afterwards.
	raft     *raft.Raft
	trans    raft.Transport
	stores   *logStores // nil when Config supplied both stores
	notifyCh chan bool
	opened   bool
	// fsmClosed is set once closeFSM has run (by a failed Open or by Close).
	fsmClosed bool
	// meter counts the log's bytes for the byte bounds, and budget is this
	// node's share of SnapshotLogBytes (logbudget.go).
	meter  *logMeter
	budget int64
	// health tracks the stores' write failures (diskspace.go).
	health *storageHealth

	closeOnce sync.Once
	closeErr  error
	closing   chan struct{} // closed when Close starts
	wg        sync.WaitGroup

	// readyTerm is the term in which this node, as leader, has committed
	// and applied its own NOOP command; 0 when not ready.
	readyTerm atomic.Uint64
	// readyMu guards readyCh, which is closed and replaced whenever
	// readyTerm changes.
	readyMu sync.Mutex
	readyCh chan struct{}

	// proposeCh feeds the proposer (see propose.go).
	proposeCh chan *proposal
	// batches and batchedCommands count proposed log entries and the
	// commands they carried.
	batches         atomic.Uint64
	batchedCommands atomic.Uint64

	// forwarded counts writes forwarded to the leader.
	forwarded atomic.Uint64

	// readMu guards pending and verifying: the batch of readers waiting for
	// the next shared leadership verification, and whether a verification
	// loop is running.
	readMu    sync.Mutex
	pending   *readBatch
	verifying bool
	// asking tracks the confirmation questions in flight (confirm.go).
	asking questions

	// leases counts down leases while this node leads (lease.go).
	leases *lease.Keeper
}

// New allocates a Node; it does no I/O. With an in-memory engine it builds
// the FSM too; with EnginePebble the FSM is opened by Open, and FSM() is nil
// until then.
func New(cfg *Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.Logger
	if base == nil {
		base = logging.Discard()
	}
	n := &Node{
		cfg:       *cfg,
		base:      base,
		logger:    base.With("component", logging.ComponentNode),
		closing:   make(chan struct{}),
		readyCh:   make(chan struct{}),
		proposeCh: make(chan *proposal, 4*maxBatchCommands),
	}
	if !cfg.durable() {
		f, err := fsm.New(n.fsmConfig())
		if err != nil {
			return nil, fmt.Errorf("new fsm: %w", err)
		}
		n.setFSM(f)
	}
	return n, nil
}

// FSM returns the node's state machine (for reads and status); nil before
// Open with a durable engine.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Open creates or opens the Raft stores under DataDir, starts the Raft
// transport and Raft itself, and bootstraps a new cluster when asked to and
// no Raft state exists yet. With a durable engine it first opens the state
// under DataDir/state (engine.go). Each step is a method below, in this order.
func (n *Node) Open() (err error) {
	if n.opened {
		return errors.New("node already opened")
	}
	n.opened = true
	defer func() {
		if err != nil {
			n.closeStores()
			if n.raft == nil { // a running raft may still apply: Close closes it
				n.closeFSM()
			}
		}
	}()
	hlog := logging.HCLog(n.base.With("component", logging.ComponentRaft))

	if n.cfg.durable() {
		if err := n.openDurable(); err != nil {
			return err
		}
	} else {
		n.reportStaleState()
	}
	logStore, stableStore, snaps, err := n.openStores(hlog)
	if err != nil {
		return err
	}
	restore := true
	var verify *pendingCheck // checked once raft runs (checkDurableStart)
	if n.cfg.durable() {
		if restore, err = restoreOnStart(n.fsm.AppliedIndex(), logStore, snaps); err != nil {
			return err
		}
		if restore {
			n.logger.Info("durable state is behind raft's latest snapshot: raft restores it", "raft_index", n.fsm.AppliedIndex())
		}
		if verify, err = n.checkDurableStart(restore, logStore); err != nil {
			return err
		}
	}
	if n.trans, err = n.openTransport(hlog); err != nil {
		return err
	}
	existing, err := raft.HasExistingState(logStore, stableStore, snaps)
	if err != nil {
		return fmt.Errorf("check raft state: %w", err)
	}
	n.meter = newLogMeter(logStore)
	n.budget = n.cfg.snapshotLogBytes() + rand.Int64N(n.cfg.snapshotLogBytes()/4+1)
	if err := n.startRaft(hlog, n.meter, stableStore, snaps, restore); err != nil {
		return err
	}
	if err := n.bootstrap(existing); err != nil {
		return err
	}

	if verify != nil {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.verifyInBackground(verify) }()
	}
	// Not in wg: its one RPC may wait for the transport's timeout when the
	// node closes meanwhile, and Close closes the transport only after wg.
	go n.campaignIfSole()
	n.wg.Add(5)
	go n.logBudgetLoop()
	go n.watchLeadership()
	go n.runProposer()
	go n.registerLoop()
	go n.leaseLoop()
	return nil
}

// openStores returns the Raft log, stable and snapshot stores: those the
// Config supplies, and the others opened under DataDir/raft (a log store
// behind a log cache, a file snapshot store that cleans up after failed
// snapshots), wrapped so that failed writes show in StorageError.
func (n *Node) openStores(hlog hclog.Logger) (raft.LogStore, raft.StableStore, raft.SnapshotStore, error) {
	cfg := &n.cfg
	logStore, stableStore, snaps := cfg.LogStore, cfg.StableStore, cfg.SnapshotStore
	if logStore != nil && stableStore != nil && snaps != nil {
		return logStore, stableStore, snaps, nil
	}
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("create raft dir %s: %w", dir, err)
	}
	n.health = &storageHealth{logger: n.logger}
	if logStore == nil || stableStore == nil {
		if !cfg.SkipStartChecks {
			if err := Preflight(cfg); err != nil {
				return nil, nil, nil, err
			}
		}
		st, err := openLogStores(dir, cfg.LogStoreKind, hlog)
		if err != nil {
			return nil, nil, nil, err
		}
		n.stores = st
		if stableStore == nil {
			stableStore = &watchedStableStore{StableStore: st.stable, health: n.health}
		}
		if logStore == nil {
			cache, err := newLogCache(cfg.logCacheSize(), cfg.logCacheBytes(), &watchedLogStore{LogStore: st.log, health: n.health})
			if err != nil {
				return nil, nil, nil, fmt.Errorf("new log cache: %w", err)
			}
			logStore = cache
		}
	}
	if snaps == nil {
		fs, err := raft.NewFileSnapshotStoreWithLogger(dir, cfg.snapshotRetain(), hlog.Named("snapshots"))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("open snapshot store %s: %w", dir, err)
		}
		cleanSnaps := newCleanSnapshotStore(fs, dir, n.logger, n.health)
		cleanSnaps.sweep() // nothing is writing yet: every *.tmp is stale
		snaps = cleanSnaps
	}
	return logStore, stableStore, snaps, nil
}

// openTransport returns Config.Transport, or a TCP Raft transport listening
// on RaftAddr and advertising RaftAdvertise (mutual TLS with RaftTLS).
func (n *Node) openTransport(hlog hclog.Logger) (raft.Transport, error) {
	cfg := &n.cfg
	if cfg.Transport != nil {
		return cfg.Transport, nil
	}
	advertise := cfg.RaftAdvertise
	if advertise == "" {
		advertise = cfg.RaftAddr
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("resolve raft advertise address %s: %w", advertise, err)
	}
	layer, err := transport.NewTCPStreamLayer(cfg.RaftAddr, adv, cfg.RaftTLS)
	if err != nil {
		return nil, fmt.Errorf("listen raft %s: %w", cfg.RaftAddr, err)
	}
	return transport.NewRaftTransport(layer, 3, 10*time.Second, hlog.Named("transport")), nil
}

// startRaft starts Raft over the stores and n.trans, with leadership changes
// sent to n.notifyCh (read by watchLeadership). restore false keeps the
// FSM's state instead of restoring raft's latest snapshot into it.
func (n *Node) startRaft(hlog hclog.Logger, logStore raft.LogStore, stableStore raft.StableStore, snaps raft.SnapshotStore, restore bool) error {
	rc := n.cfg.raftConfig()
	rc.Logger = hlog
	rc.NoSnapshotRestoreOnStart = !restore
	n.notifyCh = make(chan bool, 8)
	rc.NotifyCh = n.notifyCh
	r, err := raft.NewRaft(rc, n.fsm, logStore, stableStore, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	return nil
}

// bootstrap writes the first configuration of a new cluster (Bootstrap or
// InitialCluster) when no Raft state existed before Open; with state, or
// with neither setting, it only logs what the node does next.
func (n *Node) bootstrap(existing bool) error {
	cfg := &n.cfg
	switch {
	case existing:
		n.logger.Info("raft state found, rejoining", "raft_index", n.fsm.AppliedIndex())
		n.reportIgnoredBootstrap()
	case cfg.Bootstrap || len(cfg.InitialCluster) > 0:
		var servers []raft.Server
		if cfg.Bootstrap {
			servers = []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: n.trans.LocalAddr()}}
		}
		for _, p := range cfg.InitialCluster {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
		if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
		n.logger.Info("bootstrapped cluster", "count", len(servers))
	default:
		n.logger.Info("no raft state and no bootstrap: waiting to be added to a cluster")
	}
	return nil
}

// Close shuts Raft down, then its transport, its stores and the FSM (a
// durable engine syncs and closes its files). Idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.closing)
		if n.raft != nil {
			if err := n.raft.Shutdown().Error(); err != nil {
				n.closeErr = fmt.Errorf("shutdown raft: %w", err)
			}
		}
		n.wg.Wait()
		if c, ok := n.trans.(raft.WithClose); ok {
			if err := c.Close(); err != nil && n.closeErr == nil {
				n.closeErr = fmt.Errorf("close raft transport: %w", err)
			}
		}
		n.closeStores()
		n.closeFSM()
	})
	return n.closeErr
}

// closeFSM closes the FSM once nothing applies to it any more; for an
// in-memory engine it does nothing.
func (n *Node) closeFSM() {
	if n.fsm == nil || n.fsmClosed {
		return
	}
	n.fsmClosed = true
	if err := n.fsm.Close(); err != nil && n.closeErr == nil {
		n.closeErr = err
	}
}

func (n *Node) closeStores() {
	if n.stores != nil {
		if err := n.stores.Close(); err != nil && n.closeErr == nil {
			n.closeErr = fmt.Errorf("close raft log: %w", err)
		}
		n.stores = nil
	}
}

// Snapshot asks Raft to take a snapshot now and waits for it.
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// WaitLeader waits until a leader is known or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := n.raft.LeaderWithID(); id != "" {
			return string(id), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %v", ErrNoLeader, ctx.Err())
		case <-t.C:
		}
	}
}
