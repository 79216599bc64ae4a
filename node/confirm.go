package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// defaultConfirmTimeout bounds a confirmation round when HeartbeatTimeout is
// left at its default: a leader that cannot hear from a quorum for that long
// is about to be replaced anyway.
const defaultConfirmTimeout = time.Second

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
// as soon as a majority is out of reach, or when ctx ends.
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
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		id     string
		term   uint64
		leader string
		err    error
	}
	answers := make(chan answer, len(others))
	for _, id := range others {
		go func(id string) {
			t, l, err := n.cfg.Remote.LeaderView(ctx, id)
			answers <- answer{id: id, term: t, leader: l, err: err}
		}(id)
	}
	no := 0
	var last error
	for range others {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrUnavailable, ctx.Err())
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
		if voters-no < quorum {
			break
		}
	}
	return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrUnavailable, last)
}

// confirmTimeout bounds one confirmation round.
func (n *Node) confirmTimeout() time.Duration {
	if n.cfg.HeartbeatTimeout > 0 {
		return n.cfg.HeartbeatTimeout
	}
	return defaultConfirmTimeout
}
