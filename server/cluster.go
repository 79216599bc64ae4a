package server

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// ClusterStore is what the Cluster service needs from a node. *node.Node
// satisfies it.
type ClusterStore interface {
	Topology() (node.Topology, error)
	Status() node.Status
	ThriftAddr(id string) string
	AddNonvoter(ctx context.Context, id, raftAddr string) (uint64, error)
	Promote(ctx context.Context, id string) (uint64, error)
	RemoveServer(ctx context.Context, id string) (uint64, error)
	TransferLeadership(ctx context.Context, id string) (string, error)
}

// Peers reaches other nodes' front doors (Forwarder does).
type Peers interface {
	// Status asks the node at addr for its status.
	Status(ctx context.Context, addr string) (*kv.StatusResponse, error)
	// GossipKeys asks the node at addr to run a keyring operation.
	GossipKeys(ctx context.Context, addr string, req *kv.GossipKeyRequest) (*kv.NodeGossipKeys, error)
}

// ClusterHandler implements the kv.Cluster service.
type ClusterHandler struct {
	h       *Handler
	store   ClusterStore
	peers   Peers
	keyring Keyring // nil when gossip is off
	now     func() time.Time
	poll    time.Duration
	status  time.Duration
}

var _ kv.Cluster = (*ClusterHandler)(nil)

// DefaultCatchupTimeout bounds how long add_member and promote_member wait
// for a new member to catch up before promoting it.
const DefaultCatchupTimeout = 60 * time.Second

// NewCluster returns the Cluster service of the front door h; keyring is
// the node's gossip keyring (nil when gossip is off).
func NewCluster(h *Handler, store ClusterStore, peers Peers, keyring Keyring) *ClusterHandler {
	return &ClusterHandler{h: h, store: store, peers: peers, keyring: keyring, now: time.Now, poll: 50 * time.Millisecond, status: time.Second}
}

func suffrage(s node.Suffrage) *kv.Suffrage {
	switch s {
	case node.SuffrageVoter:
		return kv.SuffragePtr(kv.Suffrage_VOTER)
	case node.SuffrageNonvoter:
		return kv.SuffragePtr(kv.Suffrage_NONVOTER)
	}
	return nil
}

func gossipState(s string) kv.GossipState {
	switch s {
	case "alive":
		return kv.GossipState_ALIVE
	case "suspect":
		return kv.GossipState_SUSPECT
	case "dead":
		return kv.GossipState_DEAD
	case "left":
		return kv.GossipState_LEFT
	}
	return kv.GossipState_UNKNOWN
}

func ms(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// Topology implements kv.Cluster: the Raft configuration merged with gossip,
// with each reachable member's applied index and last contact asked of the
// member itself (in parallel, one second each).
func (c *ClusterHandler) Topology(ctx context.Context) (_ *kv.Topology, err error) {
	defer c.h.recoverPanic("cluster.topology", &err)
	t, err := c.store.Topology()
	if err != nil {
		return nil, &kv.Unavailable{Reason: err.Error()}
	}
	self := c.store.Status()
	out := &kv.Topology{LeaderID: t.LeaderID, Term: int64(t.Term), ServedBy: self.ID, ConfigIndex: int64(t.ConfigIndex)}
	out.Members = make([]*kv.Member, len(t.Members))
	var wg sync.WaitGroup
	for i, m := range t.Members {
		km := &kv.Member{
			NodeID:        m.ID,
			ThriftAddr:    m.ThriftAddr,
			RaftAddr:      m.RaftAddr,
			GossipAddr:    m.GossipAddr,
			AdminAddr:     m.AdminAddr,
			Suffrage:      suffrage(m.Suffrage),
			Leader:        m.Leader,
			GossipState:   gossipState(m.GossipState),
			AppliedIndex:  -1,
			LastContactMs: -1,
			Version:       m.Version,
		}
		out.Members[i] = km
		switch {
		case m.ID == self.ID:
			km.AppliedIndex = int64(self.AppliedIndex)
			km.LastContactMs = ms(self.LastContact)
			if km.Version == "" {
				km.Version = c.h.cfg.Version
			}
		case m.ThriftAddr != "" && c.peers != nil && m.GossipState != "dead" && m.GossipState != "left":
			wg.Add(1)
			go func(km *kv.Member, addr string) {
				defer wg.Done()
				sctx, cancel := context.WithTimeout(ctx, c.status)
				defer cancel()
				if st, err := c.peers.Status(sctx, addr); err == nil {
					km.AppliedIndex = st.AppliedIndex
					km.LastContactMs = st.LastContactMs
				}
			}(km, m.ThriftAddr)
		}
	}
	wg.Wait()
	return out, nil
}

func catchupTimeout(ms *int64) (time.Duration, error) {
	if ms == nil {
		return DefaultCatchupTimeout, nil
	}
	if *ms <= 0 {
		return 0, invalid("catchup_timeout_ms", "must be positive, got %d", *ms)
	}
	return time.Duration(*ms) * time.Millisecond, nil
}

// memberCtx gives membership changes their own deadline: catching up may
// take far longer than an ordinary request.
func memberCtx(ctx context.Context, catchup time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, catchup+10*time.Second)
}

// AddMember implements kv.Cluster.
func (c *ClusterHandler) AddMember(ctx context.Context, req *kv.AddMemberRequest) (_ *kv.MemberChangeResponse, err error) {
	defer c.h.recoverPanic("cluster.add_member", &err)
	if req == nil || req.NodeID == "" {
		return nil, c.h.fail(invalid("node_id", "required"), nil)
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return nil, c.h.fail(invalid("raft_addr", "%q is not host:port", req.RaftAddr), nil)
	}
	wait, err := catchupTimeout(req.CatchupTimeoutMs)
	if err != nil {
		return nil, c.h.fail(err, nil)
	}
	ctx, cancel := memberCtx(ctx, wait)
	defer cancel()
	idx, err := c.store.AddNonvoter(ctx, req.NodeID, req.RaftAddr)
	if err != nil {
		return nil, c.h.fail(err, nil)
	}
	if req.GetNonvoter() {
		return &kv.MemberChangeResponse{Index: int64(idx), Suffrage: kv.SuffragePtr(kv.Suffrage_NONVOTER)}, nil
	}
	return c.promote(ctx, req.NodeID, wait)
}

// PromoteMember implements kv.Cluster.
func (c *ClusterHandler) PromoteMember(ctx context.Context, req *kv.PromoteMemberRequest) (_ *kv.MemberChangeResponse, err error) {
	defer c.h.recoverPanic("cluster.promote_member", &err)
	if req == nil || req.NodeID == "" {
		return nil, c.h.fail(invalid("node_id", "required"), nil)
	}
	wait, err := catchupTimeout(req.CatchupTimeoutMs)
	if err != nil {
		return nil, c.h.fail(err, nil)
	}
	ctx, cancel := memberCtx(ctx, wait)
	defer cancel()
	return c.promote(ctx, req.NodeID, wait)
}

// promote waits until the member has applied the leader's commit index as
// of now, then makes it a voter, so a new voter never weakens the quorum
// while it is still far behind.
func (c *ClusterHandler) promote(ctx context.Context, id string, wait time.Duration) (*kv.MemberChangeResponse, error) {
	st := c.store.Status()
	if st.Role != node.RoleLeader {
		// Only the leader can promote; don't wait out the catch-up first.
		if st.LeaderID == "" {
			return nil, c.h.fail(node.ErrNoLeader, nil)
		}
		return nil, c.h.fail(&node.NotLeaderError{LeaderID: st.LeaderID, LeaderRaftAddr: st.LeaderRaftAddr}, nil)
	}
	target := st.CommitIndex
	deadline := c.now().Add(wait)
	var last int64 = -1
	for {
		if addr := c.store.ThriftAddr(id); addr != "" && c.peers != nil {
			sctx, cancel := context.WithTimeout(ctx, c.status)
			st, err := c.peers.Status(sctx, addr)
			cancel()
			if err == nil {
				last = st.AppliedIndex
				if uint64(st.AppliedIndex) >= target {
					break
				}
			}
		}
		if c.now().After(deadline) {
			return nil, &kv.Timeout{Reason: fmt.Sprintf("%s did not catch up to index %d within %v (last seen at %d); it stays a nonvoter: run promote_member when it has", id, target, wait, last)}
		}
		select {
		case <-ctx.Done():
			return nil, &kv.Timeout{Reason: fmt.Sprintf("%s: %v; it stays a nonvoter", id, ctx.Err())}
		case <-time.After(c.poll):
		}
	}
	idx, err := c.store.Promote(ctx, id)
	if err != nil {
		return nil, c.h.fail(err, nil)
	}
	return &kv.MemberChangeResponse{Index: int64(idx), Suffrage: kv.SuffragePtr(kv.Suffrage_VOTER)}, nil
}

// RemoveMember implements kv.Cluster.
func (c *ClusterHandler) RemoveMember(ctx context.Context, req *kv.RemoveMemberRequest) (_ *kv.MemberChangeResponse, err error) {
	defer c.h.recoverPanic("cluster.remove_member", &err)
	if req == nil || req.NodeID == "" {
		return nil, c.h.fail(invalid("node_id", "required"), nil)
	}
	ctx, cancel := memberCtx(ctx, 0)
	defer cancel()
	idx, err := c.store.RemoveServer(ctx, req.NodeID)
	if err != nil {
		return nil, c.h.fail(err, nil)
	}
	return &kv.MemberChangeResponse{Index: int64(idx)}, nil
}

// TransferLeadership implements kv.Cluster.
func (c *ClusterHandler) TransferLeadership(ctx context.Context, req *kv.TransferLeadershipRequest) (_ *kv.TransferLeadershipResponse, err error) {
	defer c.h.recoverPanic("cluster.transfer_leadership", &err)
	id := ""
	if req != nil {
		id = req.GetNodeID()
	}
	ctx, cancel := memberCtx(ctx, 0)
	defer cancel()
	leader, err := c.store.TransferLeadership(ctx, id)
	if err != nil {
		return nil, c.h.fail(err, nil)
	}
	return &kv.TransferLeadershipResponse{LeaderID: leader, Term: int64(c.store.Status().Term)}, nil
}
