package fsm

import (
	"slices"
	"strings"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Member is one node's addresses as the replicated members table records
// them. An empty address means the node has none of that kind (no gossip,
// no admin port).
type Member struct {
	ID         string
	ThriftAddr string
	RaftAddr   string
	GossipAddr string
	AdminAddr  string
}

// MaxMemberField bounds a node id and each address in a MEMBER_SET
// command, in bytes: longer ones are refused (ErrInvalidCommand), which
// also bounds the table in snapshots.
const MaxMemberField = 1024

// maxSnapshotMembers bounds the member count Restore accepts.
const maxSnapshotMembers = 1 << 16

func memberFromKV(m *kv.MemberAddrs) Member {
	return Member{
		ID:         m.NodeID,
		ThriftAddr: m.GetThriftAddr(),
		RaftAddr:   m.GetRaftAddr(),
		GossipAddr: m.GetGossipAddr(),
		AdminAddr:  m.GetAdminAddr(),
	}
}

// ToKV returns m as the Thrift struct a MEMBER_SET command carries.
func (m Member) ToKV() *kv.MemberAddrs {
	return &kv.MemberAddrs{
		NodeID:     m.ID,
		ThriftAddr: &m.ThriftAddr,
		RaftAddr:   &m.RaftAddr,
		GossipAddr: &m.GossipAddr,
		AdminAddr:  &m.AdminAddr,
	}
}

// fields returns the id and the addresses, in snapshot order.
func (m Member) fields() [5]string {
	return [5]string{m.ID, m.ThriftAddr, m.RaftAddr, m.GossipAddr, m.AdminAddr}
}

// Member returns the replicated addresses of node id.
func (f *FSM) Member(id string) (Member, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	m, ok := f.members[id]
	return m, ok
}

// Members returns the replicated members table, sorted by id.
func (f *FSM) Members() []Member {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return sortedMembers(f.members)
}

func sortedMembers(t map[string]Member) []Member {
	out := make([]Member, 0, len(t))
	for _, m := range t {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}
