package nodetest

import (
	"sort"
	"sync"
	"time"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/node"
)

// Membership is a fake gossip view: a node.Membership whose members and
// their liveness the test sets. The zero value is empty and ready to use.
type Membership struct {
	mu      sync.Mutex
	members map[string]gossip.Member
}

var _ node.Membership = (*Membership)(nil)

// Members returns every member, sorted by id.
func (m *Membership) Members() []gossip.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]gossip.Member, 0, len(m.members))
	for _, mem := range m.members {
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Member returns one member by node id.
func (m *Membership) Member(id string) (gossip.Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[id]
	return mem, ok
}

// Set adds mem, or replaces the member with its id. A zero State means
// alive.
func (m *Membership) Set(mem gossip.Member) {
	if mem.State == 0 {
		mem.State = gossip.StateAlive
	}
	if mem.Since.IsZero() {
		mem.Since = time.Now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.members == nil {
		m.members = map[string]gossip.Member{}
	}
	m.members[mem.ID] = mem
}

// SetState changes the liveness of member id, as gossip would on a failed
// probe or a leave. It reports false when id is not a member.
func (m *Membership) SetState(id string, s gossip.State) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[id]
	if !ok {
		return false
	}
	mem.State, mem.Since = s, time.Now()
	m.members[id] = mem
	return true
}

// Remove forgets member id, as gossip does once a dead member is reaped.
func (m *Membership) Remove(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.members, id)
}
