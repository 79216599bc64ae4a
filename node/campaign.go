// Campaigning at once when this node is the only voter.

package node

import (
	"github.com/hashicorp/raft"
)

// soleVoter reports whether id is the only voter of c.
func soleVoter(c raft.Configuration, id raft.ServerID) bool {
	voters, self := 0, false
	for _, s := range c.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		self = self || s.ID == id
	}
	return voters == 1 && self
}

// campaignIfSole starts an election at once when this node is the only voter
// of its latest configuration and follows no leader. No other node can win
// an election then, so waiting out the heartbeat timeout (1-2 s by default)
// only delays the first read and write after every start of a one-node
// cluster; etcd fast-forwards its election ticks for a one-member cluster
// for the same reason. The election is raft's own: this node sends itself
// the TimeoutNow a leadership transfer sends its target, and raft then
// runs an ordinary election in the next term. Timeouts never decide safety
// here (linearizable reads confirm leadership with a fresh round,
// confirm.go), so an early election changes only when the node serves.
// A failure (the transport cannot reach its own address, as an in-memory
// one without a self connection) leaves raft's heartbeat timeout to start
// the election, as it would have anyway.
//
// Raft would take a lower heartbeat timeout through ReloadConfig instead,
// but not below LeaderLeaseTimeout, which is not reloadable. What this way
// leaves open is harmless with one voter: when the RPC arrives after raft
// has elected the node by itself (a self dial slower than the 1-2 s
// timeout), the leader becomes a candidate and wins again at once, and a
// write in flight then answers an error its client retries. The
// connection to itself stays in the transport's pool until the process
// ends: one per start.
func (n *Node) campaignIfSole() {
	cf := n.raft.GetConfiguration()
	if cf.Error() != nil || !soleVoter(cf.Configuration(), raft.ServerID(n.cfg.ID)) {
		return
	}
	select {
	case <-n.closing:
		return
	default:
	}
	if _, leader := n.raft.LeaderWithID(); n.raft.State() != raft.Follower || leader != "" {
		return
	}
	req := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: n.cfg.raftConfig().ProtocolVersion,
		ID:              []byte(n.cfg.ID),
		Addr:            n.trans.EncodePeer(raft.ServerID(n.cfg.ID), n.trans.LocalAddr()),
	}}
	if err := n.trans.TimeoutNow(raft.ServerID(n.cfg.ID), n.trans.LocalAddr(), req, &raft.TimeoutNowResponse{}); err != nil {
		n.logger.Debug("election on start not requested: raft's heartbeat timeout starts it", "err", err)
		return
	}
	n.logger.Info("only voter: election started without waiting for the heartbeat timeout")
}
