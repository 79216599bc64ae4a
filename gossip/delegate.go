package gossip

import "github.com/hashicorp/memberlist"

// delegate implements memberlist.Delegate and memberlist.EventDelegate for
// a Gossip. memberlist calls the event methods one at a time, under its node
// lock; they only record and queue, never block.
type delegate struct {
	g *Gossip
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
)

// NodeMeta returns the encoded local metadata; its size was checked when it
// was set.
func (d *delegate) NodeMeta(limit int) []byte {
	d.g.mu.Lock()
	defer d.g.mu.Unlock()
	if len(d.g.metaBuf) > limit {
		return nil // unreachable: encodeMeta enforces memberlist.MetaMaxSize
	}
	return d.g.metaBuf
}

// NotifyMsg ignores user messages: cubekv sends none.
func (d *delegate) NotifyMsg([]byte) {}

// GetBroadcasts returns nothing: cubekv has no user broadcasts.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState returns nothing: all state travels in the node metadata.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState ignores remote user state: there is none.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin records a member that became alive.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.g.observe(changeJoin, n) }

// NotifyUpdate records a member's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.observe(changeUpdate, n) }

// NotifyLeave records a member that failed or left.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.g.observe(changeGone, n) }
