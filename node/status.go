// What a node reports about itself: its role and Status.

package node

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// Role is a node's Raft role.
type Role int

// Roles, as in raft.RaftState.
const (
	RoleFollower Role = iota + 1
	RoleCandidate
	RoleLeader
	RoleShutdown
)

func (r Role) String() string {
	switch r {
	case RoleFollower:
		return "follower"
	case RoleCandidate:
		return "candidate"
	case RoleLeader:
		return "leader"
	default:
		return "shutdown"
	}
}

// Status is a node's view of itself.
type Status struct {
	ID             string
	Role           Role
	Term           uint64
	CommitIndex    uint64
	AppliedIndex   uint64 // the FSM's own applied index
	LeaderID       string
	LeaderRaftAddr string
	// LastContact is the time since the node last heard from a leader: 0 on
	// the leader, -1 when it never has.
	LastContact   time.Duration
	SnapshotIndex uint64
	Keys          int
	Bytes         int64
	Engine        string
	// Forwarded counts writes this node forwarded to a leader.
	Forwarded uint64
}

// Status reports the node's current state.
func (n *Node) Status() Status {
	st := Status{
		ID:           n.cfg.ID,
		AppliedIndex: n.fsm.AppliedIndex(),
		Keys:         n.fsm.Len(),
		Bytes:        n.fsm.Bytes(),
		Engine:       n.fsm.EngineName(),
		Forwarded:    n.forwarded.Load(),
		Role:         RoleShutdown,
		LastContact:  -1,
	}
	if n.raft == nil {
		return st
	}
	switch n.raft.State() {
	case raft.Follower:
		st.Role = RoleFollower
	case raft.Candidate:
		st.Role = RoleCandidate
	case raft.Leader:
		st.Role = RoleLeader
	}
	st.Term = n.raft.CurrentTerm()
	st.CommitIndex = n.raft.CommitIndex()
	addr, id := n.raft.LeaderWithID()
	st.LeaderID, st.LeaderRaftAddr = string(id), string(addr)
	st.LastContact = n.lastContact()
	if v, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64); err == nil {
		st.SnapshotIndex = v
	}
	return st
}

func (n *Node) lastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	// raft also sets this when a leader steps down, so a former leader
	// reports staleness from the end of its own leadership.
	t := n.raft.LastContact()
	if t.IsZero() {
		return -1
	}
	return time.Since(t)
}
