package clienttest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cubekv/cubekv/thrift/kv"
)

// SetTopology sets the topology the fake answers Cluster.topology with (nil: Unavailable, the
// default). The fake keeps its own copy and names itself in served_by. A fake that belongs to a
// Cluster gets its topology from the cluster instead.
func (s *Server) SetTopology(t *kv.Topology) {
	s.mu.Lock()
	s.topology = cloneTopology(t)
	s.mu.Unlock()
}

// SetTopologyHook installs h (nil removes it), which runs before every Cluster.topology request like a
// Hook before a KV call: it may block, and an error it returns is the answer.
func (s *Server) SetTopologyHook(h Hook) {
	s.mu.Lock()
	s.topologyHook = h
	s.mu.Unlock()
}

// TopologyCalls returns how many Cluster.topology requests the fake received.
func (s *Server) TopologyCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.topologyCalls
}

// Follow makes the fake a follower of leaderID: Status reports it, and writes and cluster changes
// answer NotLeader naming leaderID at leaderAddr (after the hook ran). Reads are still served from the
// fake's own data.
func (s *Server) Follow(leaderID, leaderAddr string) {
	s.mu.Lock()
	s.role, s.leaderID = kv.Role_FOLLOWER, leaderID
	s.followLeader, s.followAddr = leaderID, leaderAddr
	s.mu.Unlock()
}

// Lead makes the fake the leader again: it serves writes and cluster changes itself.
func (s *Server) Lead() {
	s.mu.Lock()
	s.role, s.leaderID = kv.Role_LEADER, s.nodeID
	s.followLeader, s.followAddr = "", ""
	s.mu.Unlock()
}

// NodeID returns the fake's node id.
func (s *Server) NodeID() string { return s.nodeID }

// notLeader returns the NotLeader answer of a follower, nil on the leader.
func (s *Server) notLeader() *kv.NotLeader {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.followLeader == "" {
		return nil
	}
	return &kv.NotLeader{LeaderID: new(s.followLeader), LeaderAddr: new(s.followAddr)}
}

// appliedIndex returns the fake's last index.
func (s *Server) appliedIndex() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.index
}

// Topology implements kv.Cluster.
func (s *Server) Topology(ctx context.Context) (*kv.Topology, error) {
	s.mu.Lock()
	s.topologyCalls++
	h := s.topologyHook
	s.mu.Unlock()
	if h != nil {
		if err := h(ctx, Call{Method: "topology"}); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	cl := s.cluster
	t := cloneTopology(s.topology)
	s.mu.Unlock()
	if cl != nil {
		t = cl.topologyAt()
	}
	if t == nil {
		return nil, &kv.Unavailable{Reason: "no topology set"}
	}
	t.ServedBy = s.nodeID
	return t, nil
}

// change runs a cluster change: it records the call, runs the hook, refuses on a follower, and applies
// fn to the topology (the cluster's, or the fake's own).
func (s *Server) change(ctx context.Context, c Call, fn func(t *kv.Topology) error) error {
	if _, err := s.begin(ctx, c); err != nil {
		return err
	}
	if nl := s.notLeader(); nl != nil {
		return nl
	}
	s.mu.Lock()
	if cl := s.cluster; cl != nil {
		s.mu.Unlock()
		return cl.change(fn)
	}
	defer s.mu.Unlock()
	if s.topology == nil {
		return &kv.Unavailable{Reason: "no topology set"}
	}
	return fn(s.topology)
}

// nextIndex returns a new index for a configuration change.
func (s *Server) nextIndex() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	return s.index
}

func findMember(t *kv.Topology, id string) *kv.Member {
	for _, m := range t.Members {
		if m.NodeID == id {
			return m
		}
	}
	return nil
}

// AddMember implements kv.Cluster: the member joins the topology (gossip state UNKNOWN, no Thrift
// address) as a voter, or a non-voter when asked.
func (s *Server) AddMember(ctx context.Context, req *kv.AddMemberRequest) (*kv.MemberChangeResponse, error) {
	suffrage := kv.Suffrage_VOTER
	if req.GetNonvoter() {
		suffrage = kv.Suffrage_NONVOTER
	}
	err := s.change(ctx, Call{Method: "add_member", Request: req}, func(t *kv.Topology) error {
		if req.NodeID == "" {
			return &kv.InvalidArgument{Field: "node_id", Reason: "required"}
		}
		if findMember(t, req.NodeID) != nil {
			return &kv.InvalidArgument{Field: "node_id", Reason: req.NodeID + " is already a member"}
		}
		t.Members = append(t.Members, &kv.Member{NodeID: req.NodeID, RaftAddr: req.RaftAddr,
			Suffrage: kv.SuffragePtr(suffrage), GossipState: kv.GossipState_UNKNOWN, AppliedIndex: -1, LastContactMs: -1})
		slices.SortFunc(t.Members, func(a, b *kv.Member) int { return cmp.Compare(a.NodeID, b.NodeID) })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &kv.MemberChangeResponse{Index: s.nextIndex(), Suffrage: kv.SuffragePtr(suffrage)}, nil
}

// RemoveMember implements kv.Cluster.
func (s *Server) RemoveMember(ctx context.Context, req *kv.RemoveMemberRequest) (*kv.MemberChangeResponse, error) {
	err := s.change(ctx, Call{Method: "remove_member", Request: req}, func(t *kv.Topology) error {
		if findMember(t, req.NodeID) == nil {
			return &kv.InvalidArgument{Field: "node_id", Reason: req.NodeID + " is not a member"}
		}
		t.Members = slices.DeleteFunc(t.Members, func(m *kv.Member) bool { return m.NodeID == req.NodeID })
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &kv.MemberChangeResponse{Index: s.nextIndex()}, nil
}

// PromoteMember implements kv.Cluster.
func (s *Server) PromoteMember(ctx context.Context, req *kv.PromoteMemberRequest) (*kv.MemberChangeResponse, error) {
	err := s.change(ctx, Call{Method: "promote_member", Request: req}, func(t *kv.Topology) error {
		m := findMember(t, req.NodeID)
		if m == nil {
			return &kv.InvalidArgument{Field: "node_id", Reason: req.NodeID + " is not a member"}
		}
		m.Suffrage = kv.SuffragePtr(kv.Suffrage_VOTER)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &kv.MemberChangeResponse{Index: s.nextIndex(), Suffrage: kv.SuffragePtr(kv.Suffrage_VOTER)}, nil
}

// TransferLeadership implements kv.Cluster: the named voter (or the first other voter) becomes the
// topology's leader in a new term. In a Cluster the fakes' roles follow.
func (s *Server) TransferLeadership(ctx context.Context, req *kv.TransferLeadershipRequest) (*kv.TransferLeadershipResponse, error) {
	var resp *kv.TransferLeadershipResponse
	err := s.change(ctx, Call{Method: "transfer_leadership", Request: req}, func(t *kv.Topology) error {
		target := req.GetNodeID()
		if target == "" {
			for _, m := range t.Members {
				if m.NodeID != t.LeaderID && m.GetSuffrage() == kv.Suffrage_VOTER {
					target = m.NodeID
					break
				}
			}
		}
		m := findMember(t, target)
		if m == nil || m.GetSuffrage() != kv.Suffrage_VOTER {
			return &kv.InvalidArgument{Field: "node_id", Reason: fmt.Sprintf("%q is not a voter", target)}
		}
		setLeader(t, target)
		resp = &kv.TransferLeadershipResponse{LeaderID: target, Term: t.Term}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// setLeader makes id the leader of t in a new term.
func setLeader(t *kv.Topology, id string) {
	t.LeaderID = id
	t.Term++
	for _, m := range t.Members {
		m.Leader = m.NodeID == id
		if m.Leader {
			m.LastContactMs = 0
		}
	}
}

// cloneTopology returns a deep copy of t (nil for nil).
func cloneTopology(t *kv.Topology) *kv.Topology {
	if t == nil {
		return nil
	}
	c := *t
	c.Members = make([]*kv.Member, len(t.Members))
	for i, m := range t.Members {
		mc := *m
		if m.Suffrage != nil {
			mc.Suffrage = kv.SuffragePtr(*m.Suffrage)
		}
		c.Members[i] = &mc
	}
	return &c
}

// Cluster is a group of fakes sharing one topology: every member is an alive voter with its fake's
// Thrift address, and the fakes' roles follow the topology's leader (followers answer writes and
// cluster changes with NotLeader naming it). Each fake keeps its own data: nothing is replicated.
// Safe for concurrent use.
type Cluster struct {
	// Servers are the fakes, in the order of the ids given to NewCluster.
	Servers []*Server

	// mu guards topo. A fake never holds its own lock while taking mu.
	mu   sync.Mutex
	topo *kv.Topology
}

// NewCluster starts one fake per id (at least one) and makes the first the leader, in term 1. The
// fakes stop when the test ends.
func NewCluster(t testing.TB, ids ...string) *Cluster {
	t.Helper()
	if len(ids) == 0 {
		t.Fatal("clienttest.NewCluster: no node ids")
	}
	c := &Cluster{topo: &kv.Topology{Members: []*kv.Member{}}}
	for _, id := range ids {
		s := NewServer(t, id)
		s.mu.Lock()
		s.cluster = c
		s.mu.Unlock()
		c.Servers = append(c.Servers, s)
		c.topo.Members = append(c.topo.Members, &kv.Member{
			NodeID:        id,
			ThriftAddr:    s.Addr,
			RaftAddr:      "raft-" + id + ":9091",
			Suffrage:      kv.SuffragePtr(kv.Suffrage_VOTER),
			GossipState:   kv.GossipState_ALIVE,
			LastContactMs: 5,
			Version:       "test",
		})
	}
	slices.SortFunc(c.topo.Members, func(a, b *kv.Member) int { return cmp.Compare(a.NodeID, b.NodeID) })
	c.SetLeader(ids[0])
	return c
}

// Server returns the fake named id, nil when there is none.
func (c *Cluster) Server(id string) *Server {
	for _, s := range c.Servers {
		if s.nodeID == id {
			return s
		}
	}
	return nil
}

// Leader returns the fake the topology names leader, nil when none.
func (c *Cluster) Leader() *Server {
	c.mu.Lock()
	id := c.topo.LeaderID
	c.mu.Unlock()
	return c.Server(id)
}

// SetLeader makes id the leader (in a new term) and every other fake its follower. An id that is
// not a fake's leaves the cluster without a reachable leader.
func (c *Cluster) SetLeader(id string) {
	_ = c.change(func(t *kv.Topology) error {
		setLeader(t, id)
		return nil
	})
}

// Update changes the shared topology with fn, e.g. to mark a member dead; the fakes' roles follow
// its leader.
func (c *Cluster) Update(fn func(t *kv.Topology)) {
	_ = c.change(func(t *kv.Topology) error {
		fn(t)
		return nil
	})
}

// Topology returns a copy of the shared topology.
func (c *Cluster) Topology() *kv.Topology {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cloneTopology(c.topo)
}

// change applies fn to the topology; when fn succeeds the fakes' roles follow the leader.
func (c *Cluster) change(fn func(t *kv.Topology) error) error {
	c.mu.Lock()
	next := cloneTopology(c.topo)
	if err := fn(next); err != nil {
		c.mu.Unlock()
		return err
	}
	c.topo = next
	leaderID, leaderAddr := next.LeaderID, ""
	if m := findMember(next, leaderID); m != nil {
		leaderAddr = m.ThriftAddr
	}
	c.mu.Unlock()
	for _, s := range c.Servers {
		if s.nodeID == leaderID {
			s.Lead()
		} else {
			s.Follow(leaderID, leaderAddr)
		}
	}
	return nil
}

// topologyAt returns a copy of the topology with each fake's applied index filled in.
func (c *Cluster) topologyAt() *kv.Topology {
	t := c.Topology()
	for _, m := range t.Members {
		if s := c.Server(m.NodeID); s != nil {
			m.AppliedIndex = s.appliedIndex()
			if m.Leader {
				m.LastContactMs = 0
			}
		}
	}
	return t
}

// GossipKeys implements kv.Cluster: the fake keeps one keyring (as key
// fingerprints) for every member of its topology and applies the operation
// to all of them.
func (s *Server) GossipKeys(ctx context.Context, req *kv.GossipKeyRequest) (*kv.GossipKeyResponse, error) {
	var resp *kv.GossipKeyResponse
	err := s.change(ctx, Call{Method: "gossip_keys", Request: req}, func(t *kv.Topology) error {
		s.keysMu.Lock()
		defer s.keysMu.Unlock()
		fp := fmt.Sprintf("%x", req.Key)
		switch req.Op {
		case kv.GossipKeyOp_INSTALL:
			if !slices.Contains(s.gossipKeys, fp) {
				s.gossipKeys = append(s.gossipKeys, fp)
			}
		case kv.GossipKeyOp_USE:
			i := slices.Index(s.gossipKeys, fp)
			if i < 0 {
				return &kv.InvalidArgument{Field: "key", Reason: "not installed"}
			}
			s.gossipKeys = append([]string{fp}, slices.Delete(slices.Clone(s.gossipKeys), i, i+1)...)
		case kv.GossipKeyOp_REMOVE:
			i := slices.Index(s.gossipKeys, fp)
			if i <= 0 {
				return &kv.InvalidArgument{Field: "key", Reason: "not installed or in use"}
			}
			s.gossipKeys = slices.Delete(s.gossipKeys, i, i+1)
		}
		resp = &kv.GossipKeyResponse{}
		for _, m := range t.Members {
			resp.Nodes = append(resp.Nodes, &kv.NodeGossipKeys{NodeID: m.NodeID, Fingerprints: slices.Clone(s.gossipKeys)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
