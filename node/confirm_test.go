package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// lateAckTransport wraps the leader's in-memory transport. Once armed, it
// delivers the next heartbeat to the held peer, keeps the peer's (successful)
// answer back until released, and fails every other outgoing AppendEntries:
// the leader is cut off as if paused, with one old acknowledgement in flight.
type lateAckTransport struct {
	*raft.InmemTransport
	held  raft.ServerID // the peer whose acknowledgement arrives late
	other raft.ServerID // the peer whose heartbeats signal a verification

	mu      sync.Mutex
	armed   bool
	cut     bool
	holding chan struct{} // closed once the held answer is in hand
	release chan struct{} // closed to deliver it
	beat    chan struct{} // a heartbeat to other was attempted after the cut
}

func newLateAckTransport(tr *raft.InmemTransport, held, other raft.ServerID) *lateAckTransport {
	return &lateAckTransport{
		InmemTransport: tr, held: held, other: other,
		holding: make(chan struct{}), release: make(chan struct{}), beat: make(chan struct{}, 1),
	}
}

// AppendEntriesPipeline refuses pipelining so that every AppendEntries goes
// through AppendEntries below.
func (l *lateAckTransport) AppendEntriesPipeline(raft.ServerID, raft.ServerAddress) (raft.AppendPipeline, error) {
	return nil, raft.ErrPipelineReplicationNotSupported
}

func isHeartbeat(args *raft.AppendEntriesRequest) bool {
	return len(args.Entries) == 0 && args.PrevLogEntry == 0 && args.LeaderCommitIndex == 0
}

func (l *lateAckTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	l.mu.Lock()
	armed, cut := l.armed, l.cut
	hold := armed && !cut && id == l.held && isHeartbeat(args)
	if hold {
		l.cut = true
	}
	l.mu.Unlock()
	switch {
	case hold:
		if err := l.InmemTransport.AppendEntries(id, target, args, resp); err != nil {
			return err
		}
		close(l.holding)
		<-l.release
		return nil
	case cut:
		if id == l.other && isHeartbeat(args) {
			select {
			case l.beat <- struct{}{}:
			default:
			}
		}
		return fmt.Errorf("cut off from %s", id)
	}
	return l.InmemTransport.AppendEntries(id, target, args, resp)
}

// TestNode_LateAcknowledgementDoesNotConfirmRead pauses a leader with one
// follower's acknowledgement of a heartbeat, sent before the read, still in
// flight. Meanwhile the other two elect a new leader, which acknowledges a
// new value. The deposed leader then gets a linearizable read and, once its
// verification has begun, the old acknowledgement. raft.VerifyLeader counts
// that acknowledgement and serves the old value; the confirmation round asks
// both voters afresh, hears a later term, and refuses.
func TestNode_LateAcknowledgementDoesNotConfirmRead(t *testing.T) {
	var late *lateAckTransport
	c := mustClusterWith(t, 3, func(i int, cfg *Config) {
		if i != 0 {
			// Slower than the in-memory preset, so that a loaded machine
			// does not start elections while n1 takes over.
			cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
			return
		}
		// n1 is the leader to be paused. Its lease, heartbeat and election timeouts are
		// long, so that it does not step down on its own while cut off (a
		// paused process checks nothing); replication every CommitTimeout
		// keeps its followers content until the cut.
		cfg.HeartbeatTimeout = time.Minute
		cfg.LeaderLeaseTimeout = time.Minute
		cfg.ElectionTimeout = time.Minute
		late = newLateAckTransport(cfg.Transport.(*raft.InmemTransport), "n2", "n3")
		cfg.Transport = late
	})
	defer close(late.release)
	n1 := c.nodes[0]

	// Make n1 the leader (its own election timer is a minute long),
	// transferring leadership again if an election takes it away.
	ready := func() bool { return n1.isLeader() && n1.readyTerm.Load() == n1.raft.CurrentTerm() }
	for attempt := 0; !ready(); attempt++ {
		if attempt == 5 {
			t.Fatal("n1 did not become a ready leader in 5 leadership transfers")
		}
		if l := c.mustLeader(t); l != n1 {
			if err := l.raft.LeadershipTransferToServer("n1", c.trans[0].LocalAddr()).Error(); err != nil {
				t.Logf("leadership transfer to n1: %v", err)
				continue
			}
		}
		// Not ready within 3 s: try another transfer.
		_ = testutil.Poll(3*time.Second, func() error {
			if ready() {
				return nil
			}
			return errors.New("n1 not a ready leader")
		})
	}
	term := n1.raft.CurrentTerm()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old, err := n1.Apply(ctx, put("k", "old"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "every node to apply the old value", func() bool {
		for _, nd := range c.nodes {
			if nd.FSM().AppliedIndex() < uint64(old.Index) {
				return false
			}
		}
		return true
	})

	// Arm, and force a heartbeat: n2 answers it in term `term`, and that
	// answer is held. From then on n1 reaches nobody over Raft.
	late.mu.Lock()
	late.armed = true
	late.mu.Unlock()
	_ = n1.raft.VerifyLeader() // only to send the heartbeat now; never waited on
	select {
	case <-late.holding:
	case <-ctx.Done():
		t.Fatal("n2's acknowledgement was never held")
	}
	for _, i := range []int{1, 2} {
		c.trans[i].Disconnect(c.trans[0].LocalAddr())
	}

	// n2 and n3 elect a leader of a later term, which acknowledges a new value.
	var next *Node
	testutil.WaitFor(t, 10*time.Second, "a ready leader among n2 and n3", func() bool {
		for _, nd := range c.nodes[1:] {
			if nd.isLeader() && nd.raft.CurrentTerm() > term && nd.readyTerm.Load() == nd.raft.CurrentTerm() {
				next = nd
				return true
			}
		}
		return false
	})
	if _, err := next.Apply(ctx, put("k", "new")); err != nil {
		t.Fatalf("new leader %s: %v", next.ID(), err)
	}
	if !n1.isLeader() || n1.raft.CurrentTerm() != term {
		t.Fatalf("n1 no longer believes it leads term %d; the scenario did not set up", term)
	}

	// The read arrives at n1 after "new" was acknowledged.
	select {
	case <-late.beat:
	default:
	}
	type result struct {
		value string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		rctx, rcancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer rcancel()
		e, found, _, err := n1.Get(rctx, []byte("k"), kv.Consistency_LINEARIZABLE)
		if err == nil && !found {
			err = errors.New("key not found")
		}
		done <- result{string(e.Value), err}
	}()
	var res result
	select {
	case res = <-done:
	case <-late.beat:
		// A verification by heartbeats has begun: deliver the old answer.
		late.mu.Lock()
		late.armed = false
		late.mu.Unlock()
		late.release <- struct{}{}
		res = <-done
	}
	switch {
	case res.err == nil:
		t.Fatalf("deposed leader n1 served a linearizable read of %q after %s acknowledged %q in a later term", res.value, next.ID(), "new")
	case !errors.Is(res.err, ErrUnavailable) && !errors.Is(res.err, ErrNotLeader):
		t.Fatalf("read on n1: %v, want unavailable or not leader", res.err)
	}
}

// blockingRemote answers LeaderView through clusterRemote, except for one
// voter, whose questions hang until release is closed; it counts the
// questions in flight to that voter.
type blockingRemote struct {
	*clusterRemote
	hung     string
	release  chan struct{}
	inflight atomic.Int32
	most     atomic.Int32
}

func (b *blockingRemote) LeaderView(ctx context.Context, id string) (uint64, string, error) {
	if id != b.hung {
		return b.clusterRemote.LeaderView(ctx, id)
	}
	n := b.inflight.Add(1)
	defer b.inflight.Add(-1)
	for {
		m := b.most.Load()
		if n <= m || b.most.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-b.release:
		return 0, "", fmt.Errorf("%w: released", ErrUnavailable)
	case <-ctx.Done():
		return 0, "", fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
	}
}

// TestNode_HungVoterCostsOneQuestion serves many reads while one voter
// never answers: the other voter's answers confirm them, and the hung voter
// has at most one question in flight, not one per round.
func TestNode_HungVoterCostsOneQuestion(t *testing.T) {
	remotes := map[int]*blockingRemote{}
	c := mustClusterWith(t, 3, func(i int, cfg *Config) {
		b := &blockingRemote{clusterRemote: cfg.Remote.(*clusterRemote), release: make(chan struct{})}
		remotes[i] = b
		cfg.Remote = b
	})
	leader := c.mustLeader(t)
	b := remotes[c.byAddr[leader.trans.LocalAddr()]]
	for _, nd := range c.nodes {
		if nd != leader {
			b.hung = nd.ID() // the last follower; set before any read
		}
	}
	defer close(b.release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := leader.Apply(ctx, put("k", "v")); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, _, _, err := leader.Get(ctx, []byte("k"), kv.Consistency_LINEARIZABLE); err != nil {
			t.Fatalf("read %d with one voter hung: %v", i, err)
		}
	}
	if m := b.most.Load(); m != 1 {
		t.Fatalf("at most %d questions were in flight to the hung voter %s, want 1", m, b.hung)
	}
}
