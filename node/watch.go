package node

import (
	"context"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Watch answers a watch from this node's applied state. At consistency c it
// first makes the read safe as Get does (LINEARIZABLE: a read index, then
// waiting until the FSM has applied it), within ctx, so a watch started
// after a write was acknowledged anywhere sees it. Then it waits for an
// event matching q (fsm.FSM.Watch) until wait has passed since the call
// began, or ctx ends; with none by then it answers without events (not an
// error). A wait already over when the read is safe still looks once. A
// history that no longer reaches q.After is an error matching
// fsm.ErrCompacted.
func (n *Node) Watch(ctx context.Context, q fsm.WatchQuery, c kv.Consistency, wait time.Duration) (fsm.WatchResult, ReadInfo, error) {
	until := time.Now().Add(wait)
	info, err := n.prepareRead(ctx, c)
	if err != nil {
		return fsm.WatchResult{}, info, err
	}
	wctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	res, err := n.fsm.Watch(wctx, q)
	info.AppliedIndex = res.Applied
	info.LastContact = n.lastContact()
	return res, info, err
}
