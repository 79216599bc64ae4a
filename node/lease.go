// Leases: the leader's countdowns (package lease) wired to this node's
// leadership, and the lease calls only the leader answers.

package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/thrift/kv"
)

// DefaultLeaseTick is Config.LeaseTick's default: a lease ends at most
// about this long after its deadline (plus one commit).
const DefaultLeaseTick = 50 * time.Millisecond

// LeaseRemote reaches the leader's front door for the lease calls a
// follower cannot answer: they need the leader's in-memory deadlines.
// server.PeerClient implements it. Errors follow Remote's rules, and a
// lease that does not exist matches fsm.ErrLeaseNotFound.
type LeaseRemote interface {
	KeepAlive(ctx context.Context, leaderID string, id uint64) (time.Duration, error)
	LeaseInfo(ctx context.Context, leaderID string, id uint64, keys bool) (LeaseInfo, error)
	Leases(ctx context.Context, leaderID string, after uint64, limit int) ([]lease.Status, bool, error)
}

// LeaseInfo is a lease as the leader sees it, with its keys when asked.
type LeaseInfo struct {
	lease.Status
	// KeyList holds the attached keys in ascending order, when asked for.
	KeyList [][]byte
}

func (n *Node) newKeeper() *lease.Keeper {
	return lease.New(lease.Config{
		Table: n.fsm,
		Revoke: func(ctx context.Context, id uint64) error {
			lid := int64(id)
			_, err := n.ApplyLocal(ctx, &kv.Command{Op: kv.CommandOp_LEASE_REVOKE, LeaseID: &lid})
			return err
		},
		// ErrTimeout is the only error after which the revoke may still
		// apply (see apply.go).
		Unknown: func(err error) bool { return errors.Is(err, ErrTimeout) },
		Logger:  n.base,
	})
}

func (n *Node) leaseTick() time.Duration { return orDefault(n.cfg.LeaseTick, DefaultLeaseTick) }

// leaseLoop counts down leases while this node is a ready leader: it
// promotes the Keeper once the node has applied an entry of its own term
// (readyTerm, the read index's readiness), so revokes the previous leader
// left in the log are applied first, and demotes it when readiness ends.
func (n *Node) leaseLoop() {
	defer n.wg.Done()
	defer n.leases.Stop()
	tick := time.NewTicker(n.leaseTick())
	defer tick.Stop()
	var term uint64 // the term the Keeper was promoted in; 0: demoted
	for {
		ch := n.readyChan()
		if t := n.readyTerm.Load(); t != term {
			if term != 0 {
				n.leases.Demote()
			}
			if t != 0 {
				n.leases.Promote()
			}
			term = t
		}
		select {
		case <-n.closing:
			return
		case <-ch:
		case <-tick.C:
			if term != 0 {
				n.leases.Expire()
			}
		}
	}
}

// leaderRead makes this node, as the leader, ready to answer a lease call
// that arrived before it: leadership confirmed with a quorum after the
// call, the read index applied, and the Keeper counting.
func (n *Node) leaderRead(ctx context.Context) error {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	if err := n.fsm.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("%w: waiting to apply index %d: %v", ErrUnavailable, idx, err)
	}
	if err := n.leases.WaitActive(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrNotReady, err)
	}
	return nil
}

// leaseLeader returns the leader to forward a lease call to, or err
// itself when it is not a NotLeader answer or there is no LeaseRemote.
func (n *Node) leaseLeader(err error) (string, error) {
	var nl *NotLeaderError
	if n.cfg.LeaseRemote != nil && errors.As(err, &nl) {
		return nl.LeaderID, nil
	}
	return "", err
}

// KeepAlive restarts lease id's countdown at its full TTL and returns the
// TTL. It is not a Raft write: the leader records it in memory after
// confirming its leadership, measured from when the call arrived. A
// follower forwards it through LeaseRemote. A lease that does not exist,
// or whose revoke the leader has decided, matches fsm.ErrLeaseNotFound.
func (n *Node) KeepAlive(ctx context.Context, id uint64) (time.Duration, error) {
	ttl, err := n.KeepAliveLocal(ctx, id)
	if leader, ferr := n.leaseLeader(err); ferr == nil && leader != "" {
		return n.cfg.LeaseRemote.KeepAlive(ctx, leader, id)
	}
	return ttl, err
}

// KeepAliveLocal is KeepAlive without forwarding: a *NotLeaderError on a
// follower.
func (n *Node) KeepAliveLocal(ctx context.Context, id uint64) (time.Duration, error) {
	t0 := time.Now()
	if err := n.leaderRead(ctx); err != nil {
		return 0, err
	}
	return n.leases.KeepAlive(id, t0)
}

// LeaseInfo returns lease id as the leader sees it, with up to maxKeys
// of its keys when keys is set (maxKeys <= 0: all). A follower forwards it.
func (n *Node) LeaseInfo(ctx context.Context, id uint64, keys bool) (LeaseInfo, error) {
	info, err := n.LeaseInfoLocal(ctx, id, keys)
	if leader, ferr := n.leaseLeader(err); ferr == nil && leader != "" {
		return n.cfg.LeaseRemote.LeaseInfo(ctx, leader, id, keys)
	}
	return info, err
}

// LeaseInfoLocal is LeaseInfo without forwarding.
func (n *Node) LeaseInfoLocal(ctx context.Context, id uint64, keys bool) (LeaseInfo, error) {
	if err := n.leaderRead(ctx); err != nil {
		return LeaseInfo{}, err
	}
	st, err := n.leases.Info(id)
	if err != nil {
		return LeaseInfo{}, err
	}
	info := LeaseInfo{Status: st}
	if keys {
		info.KeyList = n.fsm.LeaseKeys(id, 0)
	}
	return info, nil
}

// Leases returns up to limit leases with ids above after, as the leader
// sees them, and whether more remain. A follower forwards it.
func (n *Node) Leases(ctx context.Context, after uint64, limit int) ([]lease.Status, bool, error) {
	out, more, err := n.LeasesLocal(ctx, after, limit)
	if leader, ferr := n.leaseLeader(err); ferr == nil && leader != "" {
		return n.cfg.LeaseRemote.Leases(ctx, leader, after, limit)
	}
	return out, more, err
}

// LeasesLocal is Leases without forwarding.
func (n *Node) LeasesLocal(ctx context.Context, after uint64, limit int) ([]lease.Status, bool, error) {
	if err := n.leaderRead(ctx); err != nil {
		return nil, false, err
	}
	return n.leases.List(after, limit)
}
