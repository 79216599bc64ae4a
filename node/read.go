package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// ReadInfo says where and how a read was served.
type ReadInfo struct {
	NodeID       string
	Consistency  kv.Consistency
	AppliedIndex uint64
	// LastContact is the time since the serving node last heard from a
	// leader: 0 on the leader, -1 when it never has.
	LastContact time.Duration
	// Leases holds the lease each returned entry is attached to, in order
	// (0: none), read at the same index as the entries; nil when none is.
	Leases []uint64
}

// readBatch is a group of readers sharing one leadership verification.
// idx and err are written before done is closed.
type readBatch struct {
	done chan struct{}
	idx  uint64
	err  error
}

// ReadIndex returns an index such that a read of local state once the FSM
// has applied it is linearizable: the leader's commit index, taken after
// the call started and confirmed with a quorum. Only the leader serves it.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := n.waitReady(ctx); err != nil {
		return 0, err
	}
	n.readMu.Lock()
	b := n.pending
	if b == nil {
		b = &readBatch{done: make(chan struct{})}
		n.pending = b
	}
	if !n.verifying {
		n.verifying = true
		go n.verifyLoop()
	}
	n.readMu.Unlock()
	select {
	case <-b.done:
		return b.idx, b.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: leadership not confirmed in time: %v", ErrUnavailable, ctx.Err())
	case <-n.closing:
		return 0, ErrShutdown
	}
}

// verifyLoop serves pending read batches one verification at a time until
// none is left.
func (n *Node) verifyLoop() {
	for {
		n.readMu.Lock()
		b := n.pending
		n.pending = nil
		if b == nil {
			n.verifying = false
			n.readMu.Unlock()
			return
		}
		n.readMu.Unlock()
		b.idx, b.err = n.verifyOnce()
		close(b.done)
	}
}

// verifyOnce reads the commit index and then confirms, with a round of
// requests sent after reading it (confirmLeadership), that this node was
// still the leader in the same term it became ready in.
func (n *Node) verifyOnce() (uint64, error) {
	term := n.readyTerm.Load()
	if term == 0 || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != term {
		return 0, n.notLeaderErr()
	}
	idx := n.raft.CommitIndex()
	ctx, cancel := context.WithTimeout(context.Background(), n.confirmTimeout())
	defer cancel()
	if err := n.confirmLeadership(ctx, term); err != nil {
		return 0, err
	}
	if n.raft.CurrentTerm() != term || n.readyTerm.Load() != term {
		return 0, fmt.Errorf("%w: term changed during read", ErrUnavailable)
	}
	return idx, nil
}

// waitReady waits until this node is a leader that has committed an entry of
// its current term. It fails at once on a follower.
func (n *Node) waitReady(ctx context.Context) error {
	for {
		ch := n.readyChan()
		if n.raft.State() != raft.Leader {
			return n.notLeaderErr()
		}
		if t := n.readyTerm.Load(); t != 0 && t == n.raft.CurrentTerm() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNotReady, ctx.Err())
		case <-n.closing:
			return ErrShutdown
		}
	}
}

// leaderReadIndex returns the leader's read index from any node: on the
// leader it is ReadIndex, on a follower with a Remote the leader is asked
// for it over the network. Either way it is observed (Observer.ReadIndex).
func (n *Node) leaderReadIndex(ctx context.Context) (uint64, error) {
	start := time.Now()
	idx, err := n.ReadIndex(ctx)
	remote := false
	var nl *NotLeaderError
	if err != nil && n.cfg.Remote != nil && errors.As(err, &nl) {
		// A follower asks the leader for the index, then waits for its own
		// FSM to reach it and reads locally: reads scale with nodes.
		remote = true
		idx, err = n.cfg.Remote.ReadIndex(ctx, nl.LeaderID)
	}
	if n.cfg.Observer != nil {
		n.cfg.Observer.ReadIndex(time.Since(start), remote, err)
	}
	return idx, err
}

// CaughtUp reports whether this node applies everything the leader had
// committed when asked (through a read index, so the leader confirms it is
// still the leader) before ctx ends: what /ready means. A follower that
// trails a busy leader by a few entries is caught up once it applies them;
// one that is far behind (catching up from a snapshot) is not.
func (n *Node) CaughtUp(ctx context.Context) (bool, error) {
	idx, err := n.leaderReadIndex(ctx)
	if err != nil {
		return false, err
	}
	if err := n.fsm.WaitApplied(ctx, idx); err != nil {
		return false, nil
	}
	return true, nil
}

// prepareRead makes a read at consistency c safe to serve from the local FSM
// and returns the ReadInfo to report with it.
func (n *Node) prepareRead(ctx context.Context, c kv.Consistency) (ReadInfo, error) {
	info := ReadInfo{NodeID: n.cfg.ID, Consistency: c}
	switch {
	case c == kv.Consistency_STALE:
	case c == kv.Consistency_LINEARIZABLE && n.cfg.UnsafeLocalReads && canaryBuild:
		// The canary: labelled linearizable, served like STALE.
	case c == kv.Consistency_LINEARIZABLE:
		idx, err := n.leaderReadIndex(ctx)
		if err != nil {
			return info, err
		}
		if err := n.fsm.WaitApplied(ctx, idx); err != nil {
			return info, fmt.Errorf("%w: waiting to apply index %d: %v", ErrUnavailable, idx, err)
		}
	default:
		return info, fmt.Errorf("unknown consistency %d", c)
	}
	info.LastContact = n.lastContact()
	return info, nil
}

// Get reads key at consistency c.
func (n *Node) Get(ctx context.Context, key []byte, c kv.Consistency) (storage.Entry, bool, ReadInfo, error) {
	info, err := n.prepareRead(ctx, c)
	if err != nil {
		return storage.Entry{}, false, info, err
	}
	e, found, lease, applied := n.fsm.GetLeased(key)
	info.AppliedIndex = applied
	if lease != 0 {
		info.Leases = []uint64{lease}
	}
	return e, found, info, nil
}

// Scan reads up to limit entries of [start, end) at consistency c; more
// reports whether entries remain beyond the last one returned.
func (n *Node) Scan(ctx context.Context, start, end []byte, reverse bool, limit int, keysOnly bool, c kv.Consistency) ([]storage.Entry, bool, ReadInfo, error) {
	info, err := n.prepareRead(ctx, c)
	if err != nil {
		return nil, false, info, err
	}
	entries, leases, more, applied := n.fsm.ScanLeased(start, end, reverse, limit, keysOnly)
	info.AppliedIndex = applied
	info.Leases = leases
	return entries, more, info, nil
}
