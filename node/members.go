package node

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The replicated members table (fsm, MEMBER_SET/MEMBER_REMOVE) holds every
// node's Thrift, Raft, gossip and admin addresses. It is how a node finds
// the leader's front door to forward a write or ask for a read index, and
// what topology and status report, so none of these depend on gossip: a
// node that gossip has declared dead, a cluster run with gossip off, or a
// node restarted before gossip has met anyone all still reach the leader.
// Gossip only adds liveness, and the table tells gossip whom to rejoin.
//
// Each node keeps its own entry current (registerLoop): once it is in the
// Raft configuration and knows a leader, it compares the table with its
// configured addresses and, when they differ, proposes a MEMBER_SET through
// Apply (a follower forwards it). Nothing is written while the entry is
// current, so a restart with unchanged addresses writes nothing. The leader
// removes a node's entry when it removes the node from the configuration.

// Registration timings.
const (
	registerCheckInterval = time.Second            // while the entry is current
	registerRetryMin      = 100 * time.Millisecond // after a failed attempt, doubling
	registerRetryMax      = 5 * time.Second
	registerTimeout       = 5 * time.Second // one attempt
)

// self returns this node's entry as it should be in the members table.
func (n *Node) self() fsm.Member {
	raftAddr := n.cfg.RaftAdvertise
	if raftAddr == "" {
		raftAddr = n.cfg.RaftAddr
	}
	if n.trans != nil {
		raftAddr = string(n.trans.LocalAddr())
	}
	return fsm.Member{
		ID:         n.cfg.ID,
		ThriftAddr: n.cfg.ThriftAddr,
		RaftAddr:   raftAddr,
		GossipAddr: n.cfg.GossipAddr,
		AdminAddr:  n.cfg.AdminAddr,
	}
}

// registerLoop keeps this node's members-table entry equal to its
// configured addresses until the node closes.
func (n *Node) registerLoop() {
	defer n.wg.Done()
	want := n.self()
	base, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		<-n.closing
		stop()
	}()
	delay := registerRetryMin
	wait := time.Duration(0)
	failing := false
	for {
		select {
		case <-n.closing:
			return
		case <-time.After(wait):
		}
		if cur, ok := n.fsm.Member(want.ID); ok && cur == want {
			wait, delay = registerCheckInterval, registerRetryMin
			continue
		}
		if !n.canRegister() {
			wait = registerRetryMin
			continue
		}
		ctx, cancel := context.WithTimeout(base, registerTimeout)
		res, err := n.Apply(ctx, &kv.Command{Op: kv.CommandOp_MEMBER_SET, Member: want.ToKV()})
		if err == nil {
			// A follower's own FSM applies the entry a little later; wait
			// for it rather than propose again.
			_ = n.fsm.WaitApplied(ctx, uint64(res.Index))
		}
		cancel()
		if err != nil {
			if !failing {
				n.logger.Warn("cannot record this node's addresses in the members table yet, retrying", "err", err)
			} else {
				n.logger.Debug("members table update failed", "err", err)
			}
			failing = true
			wait = delay
			delay = min(2*delay, registerRetryMax)
			continue
		}
		n.logger.Info("recorded this node's addresses in the members table", "addr", want.ThriftAddr)
		failing = false
		wait, delay = 0, registerRetryMin
	}
}

// canRegister reports whether this node knows a leader and is in the
// latest Raft configuration (a removed node must not put itself back).
func (n *Node) canRegister() bool {
	if _, id := n.raft.LeaderWithID(); id == "" {
		return false
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.ID {
			return true
		}
	}
	return false
}

// forgetMember removes id's members-table entry after its removal from the
// Raft configuration. A failure is logged, not returned: the removal itself
// succeeded, and a stale entry is only a stale address.
func (n *Node) forgetMember(ctx context.Context, id string) {
	if n.raft.State() != raft.Leader {
		return
	}
	if _, ok := n.fsm.Member(id); !ok {
		return
	}
	cmd := &kv.Command{Op: kv.CommandOp_MEMBER_REMOVE, Member: &kv.MemberAddrs{NodeID: id}}
	if _, err := n.ApplyLocal(ctx, cmd); err != nil {
		n.logger.Warn("removed member's addresses not forgotten", "peer", id, "err", err)
	}
}

// checkMemberSet refuses, on the leader, a MEMBER_SET for a node outside
// the Raft configuration: a removed node that has not yet learned of its
// removal must not put its entry back.
func (n *Node) checkMemberSet(cmd *kv.Command) error {
	if cmd.Op != kv.CommandOp_MEMBER_SET || cmd.Member == nil || n.raft.State() != raft.Leader {
		return nil
	}
	servers, _, err := n.Configuration()
	if err != nil {
		return err
	}
	for _, s := range servers {
		if s.ID == cmd.Member.NodeID {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrUnknownMember, cmd.Member.NodeID)
}

// ThriftAddr returns the client-facing address of node id: from the
// replicated members table, else from gossip, else "".
func (n *Node) ThriftAddr(id string) string {
	if m, ok := n.fsm.Member(id); ok && m.ThriftAddr != "" {
		return m.ThriftAddr
	}
	if n.cfg.Membership != nil {
		if m, ok := n.cfg.Membership.Member(id); ok {
			return m.ThriftAddr
		}
	}
	return ""
}

// GossipPeers returns the gossip address of every other node in the
// members table (node id -> address), for gossip to keep rejoining. It
// only reads the FSM, so it is cheap and never blocks on Raft.
func (n *Node) GossipPeers() map[string]string {
	out := make(map[string]string)
	for _, m := range n.fsm.Members() {
		if m.ID != n.cfg.ID && m.GossipAddr != "" {
			out[m.ID] = m.GossipAddr
		}
	}
	return out
}
