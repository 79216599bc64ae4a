package server

import (
	"strings"
	"time"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Node-to-wire conversions: how node's and storage's values become the
// Thrift structs clients read. Each has one function here; the admin port
// reuses them.

// LastContactMs is a last-contact duration as the wire and the admin port
// carry it: whole milliseconds, -1 when unknown (a negative duration).
func LastContactMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

var roles = map[node.Role]kv.Role{
	node.RoleFollower:  kv.Role_FOLLOWER,
	node.RoleCandidate: kv.Role_CANDIDATE,
	node.RoleLeader:    kv.Role_LEADER,
	node.RoleShutdown:  kv.Role_SHUTDOWN,
}

// role maps a Raft role; an unknown one reads as shut down.
func role(r node.Role) kv.Role { return lookup(roles, r, kv.Role_SHUTDOWN) }

var suffrages = map[node.Suffrage]kv.Suffrage{
	node.SuffrageVoter:    kv.Suffrage_VOTER,
	node.SuffrageNonvoter: kv.Suffrage_NONVOTER,
}

// suffrage maps a member's vote; nil when it is not in the Raft
// configuration.
func suffrage(s node.Suffrage) *kv.Suffrage {
	if w, ok := suffrages[s]; ok {
		return kv.SuffragePtr(w)
	}
	return nil
}

var gossipStates = map[gossip.State]kv.GossipState{
	gossip.StateAlive:   kv.GossipState_ALIVE,
	gossip.StateSuspect: kv.GossipState_SUSPECT,
	gossip.StateDead:    kv.GossipState_DEAD,
	gossip.StateLeft:    kv.GossipState_LEFT,
}

// gossipState maps a member's gossip liveness; 0 (never seen in gossip)
// is UNKNOWN.
func gossipState(s gossip.State) kv.GossipState {
	return lookup(gossipStates, s, kv.GossipState_UNKNOWN)
}

// lookup returns m[k], or otherwise when m has no k.
func lookup[K comparable, V any](m map[K]V, k K, otherwise V) V {
	if v, ok := m[k]; ok {
		return v
	}
	return otherwise
}

// gossipStateName is the state's name in messages: "alive", "suspect",
// "dead", "left" or "unknown".
func gossipStateName(s gossip.State) string {
	return strings.ToLower(gossipState(s).String())
}

func readInfo(ri node.ReadInfo) *kv.ReadInfo {
	return &kv.ReadInfo{
		NodeID:        ri.NodeID,
		Consistency:   ri.Consistency,
		AppliedIndex:  int64(ri.AppliedIndex),
		LastContactMs: LastContactMs(ri.LastContact),
	}
}

func toEntry(e storage.Entry, keysOnly bool) *kv.Entry {
	out := &kv.Entry{Key: e.Key, CreateIndex: int64(e.CreateIndex), ModIndex: int64(e.ModIndex)}
	if !keysOnly {
		v := e.Value
		if v == nil {
			v = []byte{}
		}
		out.Value = v
	}
	return out
}

func statusResponse(st node.Status, version string) *kv.StatusResponse {
	return &kv.StatusResponse{
		NodeID:         st.ID,
		Role:           role(st.Role),
		Term:           int64(st.Term),
		CommitIndex:    int64(st.CommitIndex),
		AppliedIndex:   int64(st.AppliedIndex),
		LeaderID:       st.LeaderID,
		LeaderRaftAddr: st.LeaderRaftAddr,
		Keys:           int64(st.Keys),
		Engine:         st.Engine,
		Version:        version,
		LastContactMs:  LastContactMs(st.LastContact),
		SnapshotIndex:  int64(st.SnapshotIndex),
	}
}

// member is a topology member as far as this node knows it alone: the
// applied index and last contact are -1 until asked of the member.
func member(m node.MemberInfo) *kv.Member {
	return &kv.Member{
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
}
