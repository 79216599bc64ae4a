package node

import (
	"context"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Remote reaches the leader's front door for a follower. server.Forwarder
// implements it over pooled Thrift connections. Errors must use node's
// sentinels: a *NotLeaderError when the addressed node is not the leader,
// ErrUnavailable when the request cannot have been applied, ErrTimeout when
// the outcome is unknown.
type Remote interface {
	// ReadIndex asks the leader for a read index confirmed with a quorum
	// after the call began.
	ReadIndex(ctx context.Context, leaderID string) (uint64, error)
	// Apply forwards a command to the leader, which applies it without
	// forwarding again.
	Apply(ctx context.Context, leaderID string, cmd *kv.Command) (*kv.WriteResult_, error)
}
