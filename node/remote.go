package node

import (
	"context"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Remote reaches other nodes' front doors: the leader's for a follower, and
// every voter's for a leader confirming reads. server.PeerClient
// implements it over pooled Thrift connections. Errors must match node's
// sentinels (errors.Is): ErrNotLeader when the addressed node is not the
// leader, ErrUnavailable when the request cannot have been applied,
// ErrTimeout when the outcome is unknown.
type Remote interface {
	// ReadIndex asks the leader for a read index confirmed with a quorum
	// after the call began.
	ReadIndex(ctx context.Context, leaderID string) (uint64, error)
	// Apply forwards a command to the leader, which applies it without
	// forwarding again.
	Apply(ctx context.Context, leaderID string, cmd *kv.Command) (*kv.WriteResult_, error)
	// LeaderView asks node id for its current term and the leader it
	// follows ("" when none), read when the request arrives there. A
	// leader asks every voter, to confirm a batch of reads. Any error means
	// no answer.
	LeaderView(ctx context.Context, id string) (term uint64, leaderID string, err error)
}
