package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/gossip"
)

// Membership is the live view of the gossip pool that the topology merges
// with the Raft configuration. *gossip.Gossip satisfies it.
type Membership interface {
	// Members returns every member gossip knows, including self.
	Members() []gossip.Member
	// Member returns one member by node id.
	Member(id string) (gossip.Member, bool)
}

// ErrUnknownMember means a membership change named a node that is not in
// the Raft configuration.
var ErrUnknownMember = errors.New("not a member")

// ErrMembership is wrapped by membership changes raft refused (for example
// a concurrent configuration change or a transfer in progress); nothing
// changed.
var ErrMembership = errors.New("membership change refused")

// Suffrage is a member's vote in Raft.
type Suffrage int

// Suffrages. SuffrageNone means not in the Raft configuration.
const (
	SuffrageNone Suffrage = iota
	SuffrageVoter
	SuffrageNonvoter
)

func (s Suffrage) String() string {
	switch s {
	case SuffrageVoter:
		return "voter"
	case SuffrageNonvoter:
		return "nonvoter"
	default:
		return "none"
	}
}

// RaftMember is one server of the Raft configuration: its id, Raft address
// and vote.
type RaftMember struct {
	ID       string
	RaftAddr string
	Suffrage Suffrage
}

// MemberInfo is one node as the topology reports it.
type MemberInfo struct {
	ID         string
	ThriftAddr string // as ThriftAddr resolves it; empty when unknown
	RaftAddr   string
	GossipAddr string
	AdminAddr  string
	Version    string
	Suffrage   Suffrage
	Leader     bool
	// GossipState is the member's liveness in gossip; 0 when it is in the
	// Raft configuration but was never seen in gossip.
	GossipState gossip.State
}

// Topology is the cluster as this node sees it.
type Topology struct {
	Members     []MemberInfo // sorted by ID
	LeaderID    string
	Term        uint64
	ConfigIndex uint64
}

// Configuration returns the latest Raft configuration and its index.
func (n *Node) Configuration() ([]RaftMember, uint64, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrRaftShutdown) {
			return nil, 0, ErrShutdown
		}
		return nil, 0, fmt.Errorf("%w: get configuration: %v", ErrUnavailable, err)
	}
	var out []RaftMember
	for _, s := range f.Configuration().Servers {
		sv := RaftMember{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: SuffrageNonvoter}
		if s.Suffrage == raft.Voter {
			sv.Suffrage = SuffrageVoter
		}
		out = append(out, sv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, f.Index(), nil
}

// Topology merges the Raft configuration with the gossip view.
func (n *Node) Topology() (Topology, error) {
	servers, idx, err := n.Configuration()
	if err != nil {
		return Topology{}, err
	}
	_, leaderID := n.raft.LeaderWithID()
	t := Topology{LeaderID: string(leaderID), Term: n.raft.CurrentTerm(), ConfigIndex: idx}
	byID := map[string]*MemberInfo{}
	for _, s := range servers {
		m := &MemberInfo{ID: s.ID, RaftAddr: s.RaftAddr, Suffrage: s.Suffrage, Leader: s.ID == t.LeaderID}
		if tm, ok := n.fsm.Member(s.ID); ok {
			m.GossipAddr, m.AdminAddr = tm.GossipAddr, tm.AdminAddr
		}
		byID[s.ID] = m
	}
	if n.cfg.Membership != nil {
		for _, gm := range n.cfg.Membership.Members() {
			m, ok := byID[gm.ID]
			if !ok {
				m = &MemberInfo{ID: gm.ID, RaftAddr: gm.RaftAddr, Suffrage: SuffrageNone}
				byID[gm.ID] = m
			}
			// The members table is authoritative for addresses; gossip
			// fills in what it lacks, and says who is alive.
			m.GossipAddr = cmp.Or(m.GossipAddr, gm.GossipAddr)
			m.AdminAddr = cmp.Or(m.AdminAddr, gm.AdminAddr)
			m.Version = gm.Version
			m.GossipState = gm.State
		}
	}
	for _, m := range byID {
		m.ThriftAddr = n.ThriftAddr(m.ID)
		t.Members = append(t.Members, *m)
	}
	sort.Slice(t.Members, func(i, j int) bool { return t.Members[i].ID < t.Members[j].ID })
	return t, nil
}

// membershipTimeout bounds how long a configuration change may wait to be
// enqueued.
const membershipTimeout = 10 * time.Second

// waitIndexFuture waits for a configuration change and translates errors.
func (n *Node) waitIndexFuture(ctx context.Context, f raft.IndexFuture) (uint64, error) {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			switch {
			case errors.Is(err, raft.ErrNotLeader):
				return 0, n.notLeaderErr()
			case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
				return 0, fmt.Errorf("%w: %v", ErrTimeout, err)
			default:
				return 0, fmt.Errorf("%w: %v", ErrMembership, err)
			}
		}
		return f.Index(), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: %v", ErrTimeout, ctx.Err())
	}
}

// leaderMember returns, on the leader, member id's entry in the latest
// Raft configuration and the configuration's index. When id is not a
// member the error wraps ErrUnknownMember and the index is still set; a
// follower gets a *NotLeaderError.
func (n *Node) leaderMember(id string) (RaftMember, uint64, error) {
	if n.raft.State() != raft.Leader {
		return RaftMember{}, 0, n.notLeaderErr()
	}
	servers, idx, err := n.Configuration()
	if err != nil {
		return RaftMember{}, 0, err
	}
	for _, s := range servers {
		if s.ID == id {
			return s, idx, nil
		}
	}
	return RaftMember{}, idx, fmt.Errorf("%w: %s", ErrUnknownMember, id)
}

// AddNonvoter adds a node that receives the log but does not vote. Adding
// a node already present with the same address is a no-op that returns the
// current configuration index.
func (n *Node) AddNonvoter(ctx context.Context, id, raftAddr string) (uint64, error) {
	m, idx, err := n.leaderMember(id)
	switch {
	case errors.Is(err, ErrUnknownMember):
		n.logger.Info("adding nonvoter", "peer", id, "addr", raftAddr)
		return n.waitIndexFuture(ctx, n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), idx, membershipTimeout))
	case err != nil:
		return 0, err
	case m.RaftAddr != raftAddr:
		return 0, fmt.Errorf("%w: %s is already a member at %s", ErrMembership, id, m.RaftAddr)
	}
	return idx, nil
}

// Promote makes a member a voter.
func (n *Node) Promote(ctx context.Context, id string) (uint64, error) {
	m, idx, err := n.leaderMember(id)
	switch {
	case err != nil:
		return 0, err
	case m.Suffrage == SuffrageVoter:
		return idx, nil
	}
	n.logger.Info("promoting to voter", "peer", id)
	return n.waitIndexFuture(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(m.RaftAddr), idx, membershipTimeout))
}

// RemoveServer removes a member from the Raft configuration.
func (n *Node) RemoveServer(ctx context.Context, id string) (uint64, error) {
	_, idx, err := n.leaderMember(id)
	if err != nil {
		return 0, err
	}
	n.logger.Info("removing member", "peer", id)
	idx, err = n.waitIndexFuture(ctx, n.raft.RemoveServer(raft.ServerID(id), idx, membershipTimeout))
	if err == nil {
		n.forgetMember(ctx, id)
	}
	return idx, err
}

// TransferLeadership hands leadership to the voter id, or to the most
// up-to-date voter when id is empty, and waits until a leader other than
// this node is known. It returns the new leader's id.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	if n.raft.State() != raft.Leader {
		return "", n.notLeaderErr()
	}
	// A vote for a transfer target skips followers' leader stickiness,
	// which the read index leans on (see read.go): stop serving reads
	// before handing over.
	term := n.raft.CurrentTerm()
	var f raft.Future
	if id == "" {
		n.withdrawReady(term)
		f = n.raft.LeadershipTransfer()
	} else {
		target, _, err := n.leaderMember(id)
		switch {
		case err != nil:
			return "", err
		case target.Suffrage != SuffrageVoter:
			return "", fmt.Errorf("%w: %s is not a voter", ErrMembership, id)
		case id == n.cfg.ID:
			return id, nil
		}
		n.withdrawReady(term)
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(target.RaftAddr))
	}
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			n.reestablish(term)
			if errors.Is(err, raft.ErrNotLeader) {
				return "", n.notLeaderErr()
			}
			return "", fmt.Errorf("%w: leadership transfer: %v", ErrUnavailable, err)
		}
	case <-ctx.Done():
		n.reestablish(term)
		return "", fmt.Errorf("%w: leadership transfer: %v", ErrTimeout, ctx.Err())
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, lid := n.raft.LeaderWithID(); lid != "" && string(lid) != n.cfg.ID {
			if id != "" && string(lid) != id {
				return string(lid), fmt.Errorf("%w: leadership went to %s, not %s", ErrUnavailable, lid, id)
			}
			n.logger.Info("leadership transferred", "leader", string(lid))
			return string(lid), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: waiting for the new leader: %v", ErrTimeout, ctx.Err())
		case <-t.C:
		}
	}
}

// reestablish makes a leader whose readiness was withdrawn (for a transfer
// that then failed) ready again in term, in the background.
func (n *Node) reestablish(term uint64) {
	select {
	case <-n.closing:
		return
	default:
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.establishUntilClosed(term)
	}()
}

// establishUntilClosed runs establish for term, giving up when the node
// closes.
func (n *Node) establishUntilClosed(term uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	n.establish(ctx, term)
}
