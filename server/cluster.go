package server

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// ClusterStore is what the Cluster service needs from a node. *node.Node
// satisfies it.
type ClusterStore interface {
	Topology() (node.Topology, error)
	Status() node.Status
	AddNonvoter(ctx context.Context, id, raftAddr string) (uint64, error)
	Promote(ctx context.Context, id string) (uint64, error)
	RemoveServer(ctx context.Context, id string) (uint64, error)
	TransferLeadership(ctx context.Context, id string) (string, error)
}

// ClusterHandler implements the kv.Cluster service.
type ClusterHandler struct {
	h       *Handler
	store   ClusterStore
	peers   *PeerClient // nil: members are not asked
	keyring Keyring     // nil when gossip is off
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
func NewCluster(h *Handler, store ClusterStore, peers *PeerClient, keyring Keyring) *ClusterHandler {
	return &ClusterHandler{h: h, store: store, peers: peers, keyring: keyring, now: time.Now, poll: 50 * time.Millisecond, status: time.Second}
}

// Topology implements kv.Cluster: the Raft configuration merged with gossip,
// with each reachable member's applied index and last contact asked of the
// member itself (in parallel, one second each).
func (c *ClusterHandler) Topology(ctx context.Context) (_ *kv.Topology, err error) {
	defer c.h.done("cluster.topology", time.Now(), &err)
	t, err := c.store.Topology()
	if err != nil {
		return nil, err
	}
	self := c.store.Status()
	out := &kv.Topology{LeaderID: t.LeaderID, Term: int64(t.Term), ServedBy: self.ID, ConfigIndex: int64(t.ConfigIndex)}
	out.Members = make([]*kv.Member, len(t.Members))
	var wg sync.WaitGroup
	for i, m := range t.Members {
		km := member(m)
		out.Members[i] = km
		switch {
		case m.ID == self.ID:
			km.AppliedIndex = int64(self.AppliedIndex)
			km.LastContactMs = LastContactMs(self.LastContact)
			if km.Version == "" {
				km.Version = c.h.cfg.Version
			}
		case m.ThriftAddr != "" && c.peers != nil && m.GossipState != gossip.StateDead && m.GossipState != gossip.StateLeft:
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
	defer c.h.done("cluster.add_member", time.Now(), &err)
	if req == nil || req.NodeID == "" {
		return nil, invalid("node_id", "required")
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return nil, invalid("raft_addr", "%q is not host:port", req.RaftAddr)
	}
	wait, err := catchupTimeout(req.CatchupTimeoutMs)
	if err != nil {
		return nil, err
	}
	ctx, cancel := memberCtx(ctx, wait)
	defer cancel()
	idx, err := c.store.AddNonvoter(ctx, req.NodeID, req.RaftAddr)
	if err != nil {
		return nil, err
	}
	if req.GetNonvoter() {
		return &kv.MemberChangeResponse{Index: int64(idx), Suffrage: kv.SuffragePtr(kv.Suffrage_NONVOTER)}, nil
	}
	return c.promote(ctx, req.NodeID, wait)
}

// PromoteMember implements kv.Cluster.
func (c *ClusterHandler) PromoteMember(ctx context.Context, req *kv.PromoteMemberRequest) (_ *kv.MemberChangeResponse, err error) {
	defer c.h.done("cluster.promote_member", time.Now(), &err)
	if req == nil || req.NodeID == "" {
		return nil, invalid("node_id", "required")
	}
	wait, err := catchupTimeout(req.CatchupTimeoutMs)
	if err != nil {
		return nil, err
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
			return nil, node.ErrNoLeader
		}
		return nil, &node.NotLeaderError{LeaderID: st.LeaderID, LeaderRaftAddr: st.LeaderRaftAddr}
	}
	target := st.CommitIndex
	deadline := c.now().Add(wait)
	var last int64 = -1
	for {
		if addr := c.h.store.ThriftAddr(id); addr != "" && c.peers != nil {
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
			return nil, fmt.Errorf("%w: %s did not catch up to index %d within %v (last seen at %d); it stays a nonvoter: run promote_member when it has", node.ErrTimeout, id, target, wait, last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: %v; it stays a nonvoter", node.ErrTimeout, id, ctx.Err())
		case <-time.After(c.poll):
		}
	}
	idx, err := c.store.Promote(ctx, id)
	if err != nil {
		return nil, err
	}
	return &kv.MemberChangeResponse{Index: int64(idx), Suffrage: kv.SuffragePtr(kv.Suffrage_VOTER)}, nil
}

// RemoveMember implements kv.Cluster.
func (c *ClusterHandler) RemoveMember(ctx context.Context, req *kv.RemoveMemberRequest) (_ *kv.MemberChangeResponse, err error) {
	defer c.h.done("cluster.remove_member", time.Now(), &err)
	if req == nil || req.NodeID == "" {
		return nil, invalid("node_id", "required")
	}
	ctx, cancel := memberCtx(ctx, 0)
	defer cancel()
	idx, err := c.store.RemoveServer(ctx, req.NodeID)
	if err != nil {
		return nil, err
	}
	return &kv.MemberChangeResponse{Index: int64(idx)}, nil
}

// TransferLeadership implements kv.Cluster.
func (c *ClusterHandler) TransferLeadership(ctx context.Context, req *kv.TransferLeadershipRequest) (_ *kv.TransferLeadershipResponse, err error) {
	defer c.h.done("cluster.transfer_leadership", time.Now(), &err)
	id := ""
	if req != nil {
		id = req.GetNodeID()
	}
	ctx, cancel := memberCtx(ctx, 0)
	defer cancel()
	leader, err := c.store.TransferLeadership(ctx, id)
	if err != nil {
		return nil, err
	}
	return &kv.TransferLeadershipResponse{LeaderID: leader, Term: int64(c.store.Status().Term)}, nil
}
