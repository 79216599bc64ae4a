package nodetest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Calls counts the Remote calls the nodes of a Cluster made.
type Calls struct {
	Apply, ReadIndex, LeaderView uint64
}

type callCounters struct {
	apply, readIndex, leaderView atomic.Uint64
}

// loopback is one node's node.Remote: it reaches the other nodes of the
// cluster through their Go API the way server.Forwarder reaches their front
// doors. It resolves an id to a Thrift address as the forwarder does (the
// members table, else gossip: node.ThriftAddr), finds the node serving
// that address, and calls what that node's Internal handler would:
// ApplyLocal, ReadIndex or LeaderView. A pair cut by Cluster.Cut or
// Isolate, or a node closed with Cluster.Stop, is unreachable.
type loopback struct {
	c    *Cluster
	from string
}

var _ node.Remote = (*loopback)(nil)

// target returns the node id serves at, or, when the caller's node knows
// no address for id, ok false.
func (r *loopback) target(id string) (n *node.Node, ok bool, err error) {
	self := r.c.Node(r.from)
	if self == nil {
		return nil, false, fmt.Errorf("%w: node %s is not in the cluster", node.ErrUnavailable, r.from)
	}
	addr := self.ThriftAddr(id)
	if addr == "" {
		return nil, false, nil
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	n, up := r.c.serving[addr]
	switch {
	case !up:
		return nil, true, fmt.Errorf("%w: nothing serves %s at %s", node.ErrUnavailable, id, addr)
	case r.c.cut[[2]string{r.from, n.ID()}]:
		return nil, true, fmt.Errorf("%w: %s at %s is unreachable from %s", node.ErrUnavailable, id, addr, r.from)
	}
	return n, true, nil
}

// Apply implements node.Remote: the leader applies cmd without forwarding
// again.
func (r *loopback) Apply(ctx context.Context, leaderID string, cmd *kv.Command) (*kv.WriteResult_, error) {
	r.c.calls.apply.Add(1)
	n, ok, err := r.target(leaderID)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		// The leader is known but not its front door: the client must go
		// there itself.
		return nil, &node.NotLeaderError{LeaderID: leaderID}
	}
	return n.ApplyLocal(ctx, cmd)
}

// ReadIndex implements node.Remote.
func (r *loopback) ReadIndex(ctx context.Context, leaderID string) (uint64, error) {
	r.c.calls.readIndex.Add(1)
	n, ok, err := r.target(leaderID)
	switch {
	case err != nil:
		return 0, err
	case !ok:
		return 0, &node.NotLeaderError{LeaderID: leaderID}
	}
	idx, err := n.ReadIndex(ctx)
	if errors.Is(err, node.ErrTimeout) {
		// A read has no outcome to be unsure of.
		return 0, fmt.Errorf("%w: %v", node.ErrUnavailable, err)
	}
	return idx, err
}

// LeaderView implements node.Remote.
func (r *loopback) LeaderView(_ context.Context, id string) (uint64, string, error) {
	r.c.calls.leaderView.Add(1)
	n, ok, err := r.target(id)
	switch {
	case err != nil:
		return 0, "", err
	case !ok:
		return 0, "", fmt.Errorf("%w: no Thrift address known for node %s", node.ErrUnavailable, id)
	}
	term, leader := n.LeaderView()
	return term, leader, nil
}
