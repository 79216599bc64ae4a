// Readiness for linearizable reads: the NOOP command a new leader commits in its term.

package node

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

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
