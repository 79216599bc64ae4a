package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Forwarder reaches the leader's front door over pooled Thrift connections.
// It implements node.Remote: a follower forwards writes through it (once;
// the leader's Internal.apply never forwards again) and asks it for a read
// index, and a leader asks each voter for its view of leadership.
type Forwarder struct {
	pool    *transport.Pool
	resolve func(id string) string
}

var _ node.Remote = (*Forwarder)(nil)

// NewForwarder returns a Forwarder that dials through pool and finds a
// node's Thrift address with resolve ("" when unknown).
func NewForwarder(pool *transport.Pool, resolve func(id string) string) *Forwarder {
	return &Forwarder{pool: pool, resolve: resolve}
}

// call runs fn on a pooled connection to the leader. notSent reports that
// no byte of the request reached the leader.
func (f *Forwarder) call(ctx context.Context, leaderID string, fn func(ctx context.Context, c *transport.Conn) error) (notSent bool, err error) {
	addr := f.resolve(leaderID)
	if addr == "" {
		// The leader is known but not its front door: the client must go
		// there itself.
		return true, &node.NotLeaderError{LeaderID: leaderID}
	}
	conn, err := f.pool.Get(ctx, addr)
	if err != nil {
		return true, fmt.Errorf("%w: leader %s at %s is unreachable: %v", node.ErrUnavailable, leaderID, addr, err)
	}
	sent, err := conn.Do(ctx, func(ctx context.Context) error { return fn(ctx, conn) })
	f.pool.Put(conn, conn.Broken())
	return !sent, err
}

// fromLeader maps what the leader answered to node's errors. A transport
// failure after the request was sent leaves the outcome unknown.
func fromLeader(leaderID string, notSent bool, err error) error {
	var (
		nl *kv.NotLeader
		to *kv.Timeout
		un *kv.Unavailable
		ia *kv.InvalidArgument
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nl):
		return &node.NotLeaderError{LeaderID: nl.GetLeaderID()}
	case errors.As(err, &to):
		return fmt.Errorf("%w: at leader %s: %s", node.ErrTimeout, leaderID, to.Reason)
	case errors.As(err, &un):
		return fmt.Errorf("%w: at leader %s: %s", node.ErrUnavailable, leaderID, un.Reason)
	case errors.As(err, &ia):
		return ia
	case errors.Is(err, node.ErrUnavailable), errors.Is(err, node.ErrNotLeader):
		return err
	case notSent:
		return fmt.Errorf("%w: forwarding to leader %s: %v", node.ErrUnavailable, leaderID, err)
	default:
		return fmt.Errorf("%w: forwarding to leader %s: %v", node.ErrTimeout, leaderID, err)
	}
}

// Apply implements node.Remote.
func (f *Forwarder) Apply(ctx context.Context, leaderID string, cmd *kv.Command) (*kv.WriteResult_, error) {
	var res *kv.WriteResult_
	notSent, err := f.call(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.Apply(ctx, cmd)
		return err
	})
	if err := fromLeader(leaderID, notSent, err); err != nil {
		return nil, err
	}
	return res, nil
}

// ReadIndex implements node.Remote.
func (f *Forwarder) ReadIndex(ctx context.Context, leaderID string) (uint64, error) {
	var res *kv.ReadIndexResponse
	notSent, err := f.call(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.ReadIndex(ctx)
		return err
	})
	if err := fromLeader(leaderID, notSent, err); err != nil {
		if errors.Is(err, node.ErrTimeout) {
			// A read has no outcome to be unsure of.
			return 0, fmt.Errorf("%w: %v", node.ErrUnavailable, err)
		}
		return 0, err
	}
	return uint64(res.Index), nil
}

// LeaderView implements node.Remote: node id's term and leader, asked over
// a pooled connection. Any failure is ErrUnavailable: a question changes
// nothing, so there is no outcome to be unsure of.
func (f *Forwarder) LeaderView(ctx context.Context, id string) (uint64, string, error) {
	addr := f.resolve(id)
	if addr == "" {
		return 0, "", fmt.Errorf("%w: no Thrift address known for node %s", node.ErrUnavailable, id)
	}
	conn, err := f.pool.Get(ctx, addr)
	if err != nil {
		return 0, "", fmt.Errorf("%w: reach node %s: %v", node.ErrUnavailable, id, err)
	}
	var res *kv.LeaderView
	_, err = conn.Do(ctx, func(ctx context.Context) error {
		var err error
		res, err = conn.Internal.LeaderView(ctx)
		return err
	})
	f.pool.Put(conn, conn.Broken())
	if err != nil {
		return 0, "", fmt.Errorf("%w: ask node %s for its leader: %v", node.ErrUnavailable, id, err)
	}
	return uint64(res.Term), res.GetLeaderID(), nil
}

// Status asks the node at addr for its status.
func (f *Forwarder) Status(ctx context.Context, addr string) (*kv.StatusResponse, error) {
	conn, err := f.pool.Get(ctx, addr)
	if err != nil {
		return nil, err
	}
	var st *kv.StatusResponse
	_, err = conn.Do(ctx, func(ctx context.Context) error {
		var err error
		st, err = conn.KV.Status(ctx)
		return err
	})
	f.pool.Put(conn, conn.Broken())
	return st, err
}
