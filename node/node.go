package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/thrift/kv"
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
}

// New allocates a Node with its FSM; it does no I/O.
func New(cfg *Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.Logger
	if base == nil {
		base = logging.Discard()
	}
	fcfg := fsm.DefaultConfig()
	fcfg.Engine = cfg.Engine
	fcfg.Logger = base // fsm adds its own component attribute
	f, err := fsm.New(fcfg)
	if err != nil {
		return nil, fmt.Errorf("new fsm: %w", err)
	}
	return &Node{
		cfg:       *cfg,
		base:      base,
		logger:    base.With("component", logging.ComponentNode),
		fsm:       f,
		closing:   make(chan struct{}),
		readyCh:   make(chan struct{}),
		proposeCh: make(chan *proposal, 4*maxBatchCommands),
	}, nil
}

// FSM returns the node's state machine (for reads and status).
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// ID returns the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Open creates or opens the Raft stores under DataDir, starts the Raft
// transport and Raft itself, and bootstraps a new cluster when asked to and
// no Raft state exists yet.
func (n *Node) Open() (err error) {
	if n.opened {
		return errors.New("node already opened")
	}
	n.opened = true
	cfg := &n.cfg
	defer func() {
		if err != nil {
			n.closeStores()
		}
	}()
	hlog := logging.HCLog(n.base.With("component", logging.ComponentRaft))

	logStore, stableStore, snaps := cfg.LogStore, cfg.StableStore, cfg.SnapshotStore
	var cleanSnaps *cleanSnapshotStore
	if logStore == nil || stableStore == nil || snaps == nil {
		dir := filepath.Join(cfg.DataDir, "raft")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create raft dir %s: %w", dir, err)
		}
		n.health = &storageHealth{logger: n.logger}
		if logStore == nil || stableStore == nil {
			if !cfg.SkipStartChecks {
				if err := Preflight(cfg); err != nil {
					return err
				}
			}
			st, err := openLogStores(dir, cfg.LogStoreKind, hlog)
			if err != nil {
				return err
			}
			n.stores = st
			if stableStore == nil {
				stableStore = &watchedStableStore{StableStore: st.stable, health: n.health}
			}
			if logStore == nil {
				size := cfg.LogCacheSize
				if size <= 0 {
					size = 512
				}
				cache, err := newLogCache(size, cfg.logCacheBytes(), &watchedLogStore{LogStore: st.log, health: n.health})
				if err != nil {
					return fmt.Errorf("new log cache: %w", err)
				}
				logStore = cache
			}
		}
		if snaps == nil {
			retain := cfg.SnapshotRetain
			if retain <= 0 {
				retain = 2
			}
			fs, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, hlog.Named("snapshots"))
			if err != nil {
				return fmt.Errorf("open snapshot store %s: %w", dir, err)
			}
			cleanSnaps = newCleanSnapshotStore(fs, dir, n.logger, n.health)
			cleanSnaps.sweep() // nothing is writing yet: every *.tmp is stale
			snaps = cleanSnaps
		}
	}

	trans := cfg.Transport
	if trans == nil {
		advertise := cfg.RaftAdvertise
		if advertise == "" {
			advertise = cfg.RaftAddr
		}
		adv, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return fmt.Errorf("resolve raft advertise address %s: %w", advertise, err)
		}
		layer, err := transport.NewTCPStreamLayer(cfg.RaftAddr, adv, cfg.RaftTLS)
		if err != nil {
			return fmt.Errorf("listen raft %s: %w", cfg.RaftAddr, err)
		}
		trans = transport.NewRaftTransport(layer, 3, 10*time.Second, hlog.Named("transport"))
	}
	n.trans = trans

	rc := cfg.raftConfig()
	rc.Logger = hlog
	n.notifyCh = make(chan bool, 8)
	rc.NotifyCh = n.notifyCh

	existing, err := raft.HasExistingState(logStore, stableStore, snaps)
	if err != nil {
		return fmt.Errorf("check raft state: %w", err)
	}
	r, err := raft.NewRaft(rc, n.fsm, logStore, stableStore, snaps, trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r

	switch {
	case existing:
		n.logger.Info("raft state found, rejoining", "raft_index", n.fsm.AppliedIndex())
		n.reportIgnoredBootstrap()
	case cfg.Bootstrap || len(cfg.InitialCluster) > 0:
		var servers []raft.Server
		if cfg.Bootstrap {
			servers = []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(cfg.ID), Address: trans.LocalAddr()}}
		}
		for _, p := range cfg.InitialCluster {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RaftAddr)})
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
		n.logger.Info("bootstrapped cluster", "count", len(servers))
	default:
		n.logger.Info("no raft state and no bootstrap: waiting to be added to a cluster")
	}

	n.wg.Add(3)
	go n.watchLeadership()
	go n.runProposer()
	go n.registerLoop()
	return nil
}

// Close shuts Raft down, then its transport and stores. Idempotent.
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
	})
	return n.closeErr
}

func (n *Node) closeStores() {
	if n.stores != nil {
		if err := n.stores.Close(); err != nil && n.closeErr == nil {
			n.closeErr = fmt.Errorf("close raft log: %w", err)
		}
		n.stores = nil
	}
}

// watchLeadership makes the node ready for reads each time it wins an
// election, by committing a NOOP command of the new term.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	stop := func() {}
	defer func() { stop() }()
	var leaderTerm uint64 // term of the running establish, 0 when none
	for {
		select {
		case <-n.closing:
			return
		case leader := <-n.notifyCh:
			term := n.raft.CurrentTerm()
			if leader && term == leaderTerm {
				continue // already establishing or established in this term
			}
			stop()
			n.setReady(0)
			leaderTerm = 0
			if !leader {
				n.logger.Info("lost leadership", "term", term)
				continue
			}
			leaderTerm = term
			n.logger.Info("became leader", "term", term)
			ctx, cancel := context.WithCancel(context.Background())
			stop = cancel
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.establish(ctx, term)
			}()
		}
	}
}

// establish commits a NOOP command in term, retrying until it succeeds,
// leadership or the term changes, or ctx ends.
func (n *Node) establish(ctx context.Context, term uint64) {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		if n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
			return
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := n.ApplyLocal(actx, &kv.Command{Op: kv.CommandOp_NOOP})
		cancel()
		if err == nil {
			if n.markReady(ctx, term) {
				n.logger.Info("leader ready for reads", "term", term, "raft_index", n.fsm.AppliedIndex())
			}
			return
		}
		n.logger.Warn("leader noop failed", "term", term, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
}

func (n *Node) setReady(term uint64) {
	n.readyMu.Lock()
	n.readyTerm.Store(term)
	close(n.readyCh)
	n.readyCh = make(chan struct{})
	n.readyMu.Unlock()
}

// withdrawReady stops linearizable reads while this node is ready in term;
// readiness in any other term is left alone (a newer term's establish may
// already have run).
func (n *Node) withdrawReady(term uint64) {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	if n.readyTerm.Load() != term {
		return
	}
	n.readyTerm.Store(0)
	close(n.readyCh)
	n.readyCh = make(chan struct{})
}

// markReady records that this node, leader in term, has applied its NOOP
// command of that term, unless a newer term began meanwhile (a late
// establish must not undo a newer one's readiness).
func (n *Node) markReady(ctx context.Context, term uint64) bool {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	if ctx.Err() != nil || n.raft.CurrentTerm() != term || n.raft.State() != raft.Leader || n.readyTerm.Load() > term {
		return false
	}
	n.readyTerm.Store(term)
	close(n.readyCh)
	n.readyCh = make(chan struct{})
	return true
}

func (n *Node) readyChan() chan struct{} {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	return n.readyCh
}

// Apply proposes cmd through Raft and waits until it is applied or ctx ends.
// On a follower with a Remote it forwards cmd once to the leader; the
// leader applies it locally (ApplyLocal) and never forwards again. See the
// package doc for what each error means.
func (n *Node) Apply(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error) {
	res, err := n.ApplyLocal(ctx, cmd)
	var nl *NotLeaderError
	if err != nil && n.cfg.Remote != nil && errors.As(err, &nl) {
		// ApplyLocal appended nothing: forwarding cannot apply twice, and
		// the request id travels inside cmd.
		n.forwarded.Add(1)
		return n.cfg.Remote.Apply(ctx, nl.LeaderID, cmd)
	}
	return res, err
}

// LastSequence returns the last applied sequence of a client id, 0 when
// unknown.
func (n *Node) LastSequence(clientID int64) int64 { return n.fsm.LastSequence(clientID) }

// Forwarded returns how many writes this node has forwarded to a leader.
func (n *Node) Forwarded() uint64 { return n.forwarded.Load() }

// ApplyLocal proposes cmd through this node's Raft, failing with a
// *NotLeaderError on a follower.
func (n *Node) ApplyLocal(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error) {
	if err := n.checkMemberSet(cmd); err != nil {
		return nil, err
	}
	r, err := n.propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("no result for the command")
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Write, nil
}

func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// translateApplyErr maps raft's errors to node's, keeping "not applied" and
// "outcome unknown" apart.
func (n *Node) translateApplyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeaderErr()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: apply queue full", ErrUnavailable)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused before it was appended.
		return fmt.Errorf("%w: leadership transfer in progress", ErrUnavailable)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost with the write in flight", ErrTimeout)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: raft shut down with the write in flight", ErrTimeout)
	default:
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
}

func (n *Node) notLeaderErr() error {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return ErrNoLeader
	}
	return &NotLeaderError{LeaderID: string(id), LeaderRaftAddr: string(addr)}
}

// NotLeaderError is ErrNotLeader with the leader this node knows of.
type NotLeaderError struct {
	LeaderID       string
	LeaderRaftAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader (leader is %s at %s)", e.LeaderID, e.LeaderRaftAddr)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Role is a node's Raft role.
type Role int

// Roles, as in raft.RaftState.
const (
	RoleFollower Role = iota + 1
	RoleCandidate
	RoleLeader
	RoleShutdown
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	default:
		return "shutdown"
	}
}

// Status is a node's view of itself.
type Status struct {
	ID             string
	Role           Role
	Term           uint64
	CommitIndex    uint64
	AppliedIndex   uint64 // the FSM's own applied index
	LeaderID       string
	LeaderRaftAddr string
	// LastContact is the time since the node last heard from a leader: 0 on
	// the leader, -1 when it never has.
	LastContact   time.Duration
	SnapshotIndex uint64
	Keys          int
	Bytes         int64
	Engine        string
	// Forwarded counts writes this node forwarded to a leader.
	Forwarded uint64
}

// Status reports the node's current state.
func (n *Node) Status() Status {
	st := Status{
		ID:           n.cfg.ID,
		AppliedIndex: n.fsm.AppliedIndex(),
		Keys:         n.fsm.Len(),
		Bytes:        n.fsm.Bytes(),
		Engine:       n.fsm.EngineName(),
		Forwarded:    n.forwarded.Load(),
		Role:         RoleShutdown,
		LastContact:  -1,
	}
	if n.raft == nil {
		return st
	}
	switch n.raft.State() {
	case raft.Follower:
		st.Role = RoleFollower
	case raft.Candidate:
		st.Role = RoleCandidate
	case raft.Leader:
		st.Role = RoleLeader
	}
	st.Term = n.raft.CurrentTerm()
	st.CommitIndex = n.raft.CommitIndex()
	addr, id := n.raft.LeaderWithID()
	st.LeaderID, st.LeaderRaftAddr = string(id), string(addr)
	st.LastContact = n.lastContact()
	if v, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
		st.SnapshotIndex = v
	}
	return st
}

func (n *Node) lastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	// raft also sets this when a leader steps down, so a former leader
	// reports staleness from the end of its own leadership.
	t := n.raft.LastContact()
	if t.IsZero() {
		return -1
	}
	return time.Since(t)
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
