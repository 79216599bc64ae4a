package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// LeaderView returns this node's current Raft term and the id of the leader
// it follows in it ("" when none is known), as they stand now. The leader's
// confirmation round asks every voter for it; any node answers, whatever
// its role.
func (n *Node) LeaderView() (term uint64, leaderID string) {
	// The term first: a leader id read after it belongs to that term or a
	// later one, so the pair never claims an older leader for a newer term.
	term = n.raft.CurrentTerm()
	_, id := n.raft.LeaderWithID()
	return term, string(id)
}

// confirmLeadership asks every other voter, with requests sent after it was
// called, for its term and leader, and returns nil once a majority of the
// voters, this node included, answer "term, this node". Every answer is
// caused by a request made after the call began, so no acknowledgement of
// an earlier message can count (raft.VerifyLeader counts those). It fails
// as soon as a majority is out of reach, when ctx ends, or with ErrShutdown
// when the node closes.
func (n *Node) confirmLeadership(ctx context.Context, term uint64) error {
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return ErrShutdown
		}
		return fmt.Errorf("%w: read configuration: %v", ErrUnavailable, err)
	}
	var others []string
	voters, self := 0, false
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.ID {
			self = true
			continue
		}
		others = append(others, string(s.ID))
	}
	quorum := voters/2 + 1
	yes := 0
	if self {
		yes = 1
	}
	if yes >= quorum {
		return nil
	}
	if n.cfg.Remote == nil {
		return fmt.Errorf("%w: no way to reach the other voters to confirm leadership", ErrUnavailable)
	}
	type answer struct {
		id     string
		term   uint64
		leader string
		err    error
	}
	// The questions outlive this call: once a majority answered, a slower
	// voter's call is left to finish rather than cancelled, since cancelling
	// a call in flight breaks its pooled connection, and on a healthy
	// cluster the slowest voter would lose its connection every round.
	// At most one question per voter is in flight: a voter still busy with
	// an earlier round's question sits this round out (its late answer
	// would not postdate this round's reads anyway), so a voter that is cut
	// off costs one pending call, not one per round.
	callCtx, cancelCalls := context.WithTimeout(context.WithoutCancel(ctx), n.confirmTimeout())
	answers := make(chan answer, len(others))
	no, asked := 0, 0
	var last error
	for _, id := range others {
		if !n.asking.start(id) {
			no++
			last = fmt.Errorf("voter %s has not answered an earlier round yet", id)
			continue
		}
		asked++
		go func(id string) {
			t, l, err := n.cfg.Remote.LeaderView(callCtx, id)
			n.asking.end(id)
			answers <- answer{id: id, term: t, leader: l, err: err}
		}(id)
	}
	left := asked
	defer func() {
		go func(left int) {
			defer cancelCalls()
			for ; left > 0; left-- {
				select {
				case <-answers:
				case <-n.closing:
					return
				}
			}
		}(left)
	}()
	for range asked {
		if voters-no < quorum {
			break
		}
		var a answer
		select {
		case a = <-answers:
			left--
		case <-ctx.Done():
			return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrUnavailable, ctx.Err())
		case <-n.closing:
			return ErrShutdown
		}
		switch {
		case a.err != nil:
			last = fmt.Errorf("voter %s: %w", a.id, a.err)
		case a.term == term && a.leader == n.cfg.ID:
			yes++
			if yes >= quorum {
				return nil
			}
			continue
		case a.term > term:
			return fmt.Errorf("%w: voter %s is in term %d, past this leader's term %d", ErrUnavailable, a.id, a.term, term)
		default:
			last = fmt.Errorf("voter %s answered term %d, leader %q", a.id, a.term, a.leader)
		}
		no++
	}
	return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrUnavailable, last)
}

// confirmTimeout bounds one confirmation round: the heartbeat timeout, since
// a leader that cannot hear from a quorum for that long is about to be
// replaced anyway.
func (n *Node) confirmTimeout() time.Duration {
	return orDefault(n.cfg.HeartbeatTimeout, DefaultHeartbeatTimeout)
}

// questions tracks the voters a confirmation question is in flight to.
type questions struct {
	mu       sync.Mutex
	inflight map[string]bool
}

// start marks a question to id in flight; false when one already is.
func (q *questions) start(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inflight[id] {
		return false
	}
	if q.inflight == nil {
		q.inflight = make(map[string]bool)
	}
	q.inflight[id] = true
	return true
}

// end marks the question to id answered.
func (q *questions) end(id string) {
	q.mu.Lock()
	delete(q.inflight, id)
	q.mu.Unlock()
}
