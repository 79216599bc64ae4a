package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Topology asks the cluster for its members now (the leader first, then the other known members, then
// the endpoints, until one answers) and makes the answer the client's cached view.
func (c *Client) Topology(ctx context.Context) (*kv.Topology, error) {
	topo, err := c.fetchTopology(ctx, c.router.fetchOrder())
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	c.router.install(topo)
	return topo, nil
}

// Leader returns the Thrift address of the leader as the client last learnt it (from the topology or
// a NotLeader answer); empty when none is known. It does no I/O.
func (c *Client) Leader() string {
	return c.router.leader()
}

// fetchTopology asks the nodes at addrs in order for the topology and returns the first answer. Each
// node gets at most topologyTryTimeout; the whole stops when ctx ends.
func (c *Client) fetchTopology(ctx context.Context, addrs []string) (*kv.Topology, error) {
	var errs []error
	for _, addr := range addrs {
		if err := transport.ContextDone(ctx); err != nil {
			errs = append(errs, err)
			break
		}
		tctx, cancel := context.WithTimeout(ctx, topologyTryTimeout)
		var topo *kv.Topology
		sent, err := c.attempt(tctx, c.pool, addr, func(ctx context.Context, conn *transport.Conn) (err error) {
			topo, err = conn.Cluster.Topology(ctx)
			return err
		})
		cancel()
		if err == nil {
			return topo, nil
		}
		_, err = classify(err, sent)
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: no address to ask", ErrUnavailable)
	}
	return nil, errors.Join(errs...)
}

// AddMember adds a node to the cluster, at the leader (following NotLeader redirects). The node joins
// as a non-voter; unless req.Nonvoter is set, the leader waits for it to catch up
// (req.CatchupTimeoutMs, 60 s when unset) and promotes it to voter. When it does not catch up in
// time the error matches ErrTimeout and the node stays a non-voter; PromoteMember finishes the job.
//
// The call is made once per node reached: after an error other than NotLeader, Unavailable or a
// failed connect the change may or may not have been made, and Topology tells which. ctx should allow
// for the catch-up; its deadline, not Dial.RequestTimeout, bounds the call (see AdminRequestTimeout).
func (c *Client) AddMember(ctx context.Context, req *kv.AddMemberRequest) (*kv.MemberChangeResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("add member: %w", &InvalidArgumentError{Field: "req", Reason: "nil request"})
	}
	resp, err := clusterChange(ctx, c, func(ctx context.Context, cc *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return cc.AddMember(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("add member %s: %w", req.NodeID, err)
	}
	return resp, nil
}

// RemoveMember removes a node from the Raft configuration, at the leader. Retries and errors are as
// for AddMember.
func (c *Client) RemoveMember(ctx context.Context, req *kv.RemoveMemberRequest) (*kv.MemberChangeResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("remove member: %w", &InvalidArgumentError{Field: "req", Reason: "nil request"})
	}
	resp, err := clusterChange(ctx, c, func(ctx context.Context, cc *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return cc.RemoveMember(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("remove member %s: %w", req.NodeID, err)
	}
	return resp, nil
}

// PromoteMember makes a non-voter a voter once it has caught up, at the leader. Retries and errors
// are as for AddMember.
func (c *Client) PromoteMember(ctx context.Context, req *kv.PromoteMemberRequest) (*kv.MemberChangeResponse, error) {
	if req == nil {
		return nil, fmt.Errorf("promote member: %w", &InvalidArgumentError{Field: "req", Reason: "nil request"})
	}
	resp, err := clusterChange(ctx, c, func(ctx context.Context, cc *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return cc.PromoteMember(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("promote member %s: %w", req.NodeID, err)
	}
	return resp, nil
}

// TransferLeadership asks the leader to hand leadership to the voter nodeID, or to the most
// up-to-date voter when nodeID is empty. On success the client routes to the new leader at once and
// refreshes its topology. Retries and errors are as for AddMember.
func (c *Client) TransferLeadership(ctx context.Context, nodeID string) (*kv.TransferLeadershipResponse, error) {
	req := &kv.TransferLeadershipRequest{}
	if nodeID != "" {
		req.NodeID = &nodeID
	}
	resp, err := clusterChange(ctx, c, func(ctx context.Context, cc *kv.ClusterClient) (*kv.TransferLeadershipResponse, error) {
		return cc.TransferLeadership(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("transfer leadership: %w", err)
	}
	c.router.leaderChanged(resp.LeaderID)
	return resp, nil
}

// clusterChange runs one Cluster mutation at the leader on an admin connection, retried only while
// nothing can have been applied.
func clusterChange[T any](ctx context.Context, c *Client, fn func(ctx context.Context, cc *kv.ClusterClient) (T, error)) (T, error) {
	var out T
	_, err := c.do(ctx, c.router.start(ctx, toLeader), callOpts{pool: c.adminPool, once: true},
		func(ctx context.Context, conn *transport.Conn) (err error) {
			out, err = fn(ctx, conn.Cluster)
			return err
		})
	return out, err
}

// GossipKeys runs a gossip keyring operation on every alive member (asked
// of the leader, which fans it out) and returns each node's keyring as
// fingerprints.
func (c *Client) GossipKeys(ctx context.Context, req *kv.GossipKeyRequest) (*kv.GossipKeyResponse, error) {
	resp, err := clusterChange(ctx, c, func(ctx context.Context, cc *kv.ClusterClient) (*kv.GossipKeyResponse, error) {
		return cc.GossipKeys(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("gossip keys: %w", err)
	}
	return resp, nil
}
