package server

import (
	"context"
	"fmt"

	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Directory finds a node's Thrift address by its id, "" when unknown.
// *node.Node is the directory: its ThriftAddr reads the replicated members
// table, with gossip as a fallback.
type Directory interface {
	ThriftAddr(id string) string
}

// PeerClient calls other nodes' front doors over pooled Thrift
// connections. It implements node.Remote: a follower forwards writes
// through it (once; the leader's Internal.apply never forwards again) and
// asks it for a read index, and a leader asks each voter for its view of
// leadership. The Cluster service asks members for their status and runs
// keyring operations through it.
//
// A declared exception a peer answers with comes back as a *peerError: the
// client gets the exception as the peer built it, and node reads the
// sentinel it stands for.
type PeerClient struct {
	pool *transport.Pool
	dir  Directory
}

var _ node.Remote = (*PeerClient)(nil)

// NewPeerClient returns a PeerClient that dials through pool and finds
// nodes' addresses in dir.
func NewPeerClient(pool *transport.Pool, dir Directory) *PeerClient {
	return &PeerClient{pool: pool, dir: dir}
}

// callLeader runs fn on a connection to the leader's front door. A
// transport failure before any byte was sent applied nothing; one after
// leaves the outcome unknown.
func (p *PeerClient) callLeader(ctx context.Context, leaderID string, fn func(ctx context.Context, c *transport.Conn) error) error {
	addr := p.dir.ThriftAddr(leaderID)
	if addr == "" {
		// The leader is known but not its front door: the client must go
		// there itself.
		return &node.NotLeaderError{LeaderID: leaderID}
	}
	sent, err := p.pool.Do(ctx, addr, fn)
	if err == nil {
		return nil
	}
	if pe, ok := fromPeer("leader "+leaderID, err); ok {
		return pe
	}
	if !sent {
		return fmt.Errorf("%w: forwarding to leader %s at %s: %v", node.ErrUnavailable, leaderID, addr, err)
	}
	return fmt.Errorf("%w: forwarding to leader %s at %s: %v", node.ErrTimeout, leaderID, addr, err)
}

// Apply implements node.Remote.
func (p *PeerClient) Apply(ctx context.Context, leaderID string, cmd *kv.Command) (*kv.WriteResult_, error) {
	var res *kv.WriteResult_
	err := p.callLeader(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.Apply(ctx, cmd)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// ReadIndex implements node.Remote.
func (p *PeerClient) ReadIndex(ctx context.Context, leaderID string) (uint64, error) {
	var res *kv.ReadIndexResponse
	err := p.callLeader(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.ReadIndex(ctx)
		return err
	})
	if err != nil {
		return 0, noOutcome(err)
	}
	return uint64(res.Index), nil
}

// LeaderView implements node.Remote: node id's term and leader. Any
// failure is ErrUnavailable: a question changes nothing, so there is no
// outcome to be unsure of.
func (p *PeerClient) LeaderView(ctx context.Context, id string) (uint64, string, error) {
	addr := p.dir.ThriftAddr(id)
	if addr == "" {
		return 0, "", fmt.Errorf("%w: no Thrift address known for node %s", node.ErrUnavailable, id)
	}
	var res *kv.LeaderView
	_, err := p.pool.Do(ctx, addr, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.LeaderView(ctx)
		return err
	})
	if err != nil {
		return 0, "", fmt.Errorf("%w: ask node %s for its leader: %v", node.ErrUnavailable, id, err)
	}
	return uint64(res.Term), res.GetLeaderID(), nil
}

// Status asks the node at addr for its status.
func (p *PeerClient) Status(ctx context.Context, addr string) (*kv.StatusResponse, error) {
	var st *kv.StatusResponse
	_, err := p.pool.Do(ctx, addr, func(ctx context.Context, c *transport.Conn) error {
		var err error
		st, err = c.KV.Status(ctx)
		return err
	})
	return st, err
}

// GossipKeys asks the node at addr to run a keyring operation on itself.
func (p *PeerClient) GossipKeys(ctx context.Context, addr string, req *kv.GossipKeyRequest) (*kv.NodeGossipKeys, error) {
	var out *kv.NodeGossipKeys
	_, err := p.pool.Do(ctx, addr, func(ctx context.Context, c *transport.Conn) error {
		var err error
		out, err = c.Internal.GossipKeysLocal(ctx, req)
		return err
	})
	return out, err
}
