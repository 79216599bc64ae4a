// The write path: Apply, forwarding to the leader, and raft errors translated to node errors.

package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Apply proposes cmd through Raft and waits until it is applied or ctx ends.
// On a follower with a Remote it forwards cmd once to the leader; the
// leader applies it locally (ApplyLocal) and never forwards again. See the
// package doc for what each error means.
func (n *Node) Apply(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error) {
	res, err := n.ApplyLocal(ctx, cmd)
	var nl *NotLeaderError
	if err != nil && n.cfg.Remote != nil && errors.As(err, &nl) {
		// ApplyLocal appended nothing: forwarding cannot apply twice, and
		// the request id travels inside cmd.
		n.forwarded.Add(1)
		return n.cfg.Remote.Apply(ctx, nl.LeaderID, cmd)
	}
	return res, err
}

// Forwarded returns how many writes this node has forwarded to a leader.
func (n *Node) Forwarded() uint64 { return n.forwarded.Load() }

// ApplyLocal proposes cmd through this node's Raft, failing with a
// *NotLeaderError on a follower.
func (n *Node) ApplyLocal(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error) {
	if err := n.checkMemberSet(cmd); err != nil {
		return nil, err
	}
	r, err := n.propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("no result for the command")
	}
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Write, nil
}

func (n *Node) isLeader() bool { return n.raft.State() == raft.Leader }

// translateApplyErr maps raft's errors to node's, keeping "not applied" and
// "outcome unknown" apart.
func (n *Node) translateApplyErr(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return n.notLeaderErr()
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: apply queue full", ErrUnavailable)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused before it was appended.
		return fmt.Errorf("%w: leadership transfer in progress", ErrUnavailable)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: leadership lost with the write in flight", ErrTimeout)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: raft shut down with the write in flight", ErrTimeout)
	default:
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
}

func (n *Node) notLeaderErr() error {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return ErrNoLeader
	}
	return &NotLeaderError{LeaderID: string(id), LeaderRaftAddr: string(addr)}
}

// NotLeaderError is ErrNotLeader with the leader this node knows of.
type NotLeaderError struct {
	LeaderID       string
	LeaderRaftAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the leader (leader is %s at %s)", e.LeaderID, e.LeaderRaftAddr)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
