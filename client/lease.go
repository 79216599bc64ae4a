package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Leases. A lease is a TTL the cluster counts down on its leader; keys
// attached to it (WithLease, or CASRequest.LeaseID) are deleted, in one
// Raft entry, when it is revoked or when no keep-alive reached the leader
// for a whole TTL. Grant and Revoke are writes (exactly once, retried
// with a request id); KeepAlive, LeaseInfo and Leases are answered by the
// leader (a follower forwards them) and are safe to repeat.

// ErrLeaseNotFound means the lease does not exist: never granted, revoked,
// or expired. A write naming it applied nothing. Errors that match it are
// *LeaseNotFoundError values.
var ErrLeaseNotFound = errors.New("lease not found")

// ErrLeaseExpired is returned by KeepAliveLoop when no keep-alive was
// acknowledged for nine tenths of its TTL: the lease may end soon.
// (The leader may revoke it a whole TTL after the last keep-alive it
// acknowledged arrived, which is after that keep-alive was sent.)
var ErrLeaseExpired = errors.New("lease may have expired")

// leaseWindow is how long after sending an acknowledged keep-alive (or the
// grant) KeepAliveLoop counts on the lease: its TTL less a safety margin
// of a tenth, which leaves the holder that long to stop acting on the
// lease before the leader may revoke it, and room for the client's clock
// running slower than the leader's.
func leaseWindow(ttl time.Duration) time.Duration { return ttl - ttl/10 }

// LeaseNotFoundError is ErrLeaseNotFound naming the lease.
type LeaseNotFoundError struct {
	ID int64
}

func (e *LeaseNotFoundError) Error() string { return fmt.Sprintf("lease %d not found", e.ID) }

// Is makes errors.Is(err, ErrLeaseNotFound) hold.
func (e *LeaseNotFoundError) Is(target error) bool { return target == ErrLeaseNotFound }

// WithLease attaches the written key to lease id: it is deleted when the
// lease ends. A put without WithLease or WithTTL detaches the key from any
// lease.
func WithLease(id int64) WriteOption {
	return func(o *writeOptions) { o.leaseID = &id }
}

// WithTTL gives the written key a lease of its own with this TTL
// (PutResponse.LeaseID names it; keep it alive with KeepAlive).
func WithTTL(ttl time.Duration) WriteOption {
	ms := ttl.Milliseconds()
	return func(o *writeOptions) { o.ttlMs = &ms }
}

// Grant grants a lease with the given TTL (whole milliseconds), exactly
// once even when retried. Its countdown starts when the leader learns of
// it, which may be well before Grant returns: count the TTL from before
// the call (see KeepAliveLoopFrom).
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (*kv.LeaseGrantResponse, error) {
	req := &kv.LeaseGrantRequest{TTLMs: ttl.Milliseconds()}
	var resp *kv.LeaseGrantResponse
	err := c.write(ctx, nil, func(ctx context.Context, kvc *kv.KVClient, id *kv.RequestID) (err error) {
		req.RequestID = id
		resp, err = kvc.GrantLease(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	return resp, nil
}

// Revoke deletes lease id and every key attached to it, in one Raft
// entry, exactly once even when retried.
func (c *Client) Revoke(ctx context.Context, id int64) (*kv.LeaseRevokeResponse, error) {
	req := &kv.LeaseRevokeRequest{LeaseID: id}
	var resp *kv.LeaseRevokeResponse
	err := c.write(ctx, nil, func(ctx context.Context, kvc *kv.KVClient, rid *kv.RequestID) (err error) {
		req.RequestID = rid
		resp, err = kvc.RevokeLease(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("revoke lease %d: %w", id, err)
	}
	return resp, nil
}

// KeepAlive restarts lease id's countdown at its full TTL, measured from
// when the leader received the request, and returns the TTL. An error
// matching ErrLeaseNotFound means the lease is gone.
func (c *Client) KeepAlive(ctx context.Context, id int64) (time.Duration, error) {
	var resp *kv.KeepAliveResponse
	_, err := c.invoke(ctx, c.router.start(ctx, toLeader), func(ctx context.Context, kvc *kv.KVClient) (err error) {
		resp, err = kvc.KeepAlive(ctx, &kv.KeepAliveRequest{LeaseID: id})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("keep-alive lease %d: %w", id, err)
	}
	return time.Duration(resp.TTLMs) * time.Millisecond, nil
}

// LeaseInfo returns lease id as the leader sees it, with its keys when
// keys is set.
func (c *Client) LeaseInfo(ctx context.Context, id int64, keys bool) (*kv.LeaseInfo, error) {
	var resp *kv.LeaseInfo
	_, err := c.invoke(ctx, c.router.start(ctx, toLeader), func(ctx context.Context, kvc *kv.KVClient) (err error) {
		resp, err = kvc.LeaseInfo(ctx, &kv.LeaseInfoRequest{LeaseID: id, Keys: &keys})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lease info %d: %w", id, err)
	}
	return resp, nil
}

// Leases returns a page of the leases with ids above afterID (at most
// limit; 0: the server's page). Follow LeaseListResponse.Continuation.
func (c *Client) Leases(ctx context.Context, afterID int64, limit int) (*kv.LeaseListResponse, error) {
	req := &kv.LeaseListRequest{AfterID: &afterID}
	if limit > 0 {
		l := int32(min(limit, 1<<30))
		req.Limit = &l
	}
	var resp *kv.LeaseListResponse
	_, err := c.invoke(ctx, c.router.start(ctx, toLeader), func(ctx context.Context, kvc *kv.KVClient) (err error) {
		resp, err = kvc.ListLeases(ctx, req)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	return resp, nil
}

// KeepAliveLoop keeps lease id alive until ctx ends (then it returns
// nil), sending a keep-alive every third of the TTL and retrying failed
// ones. It returns an error matching ErrLeaseNotFound when the lease is
// gone, and ErrLeaseExpired when no keep-alive was acknowledged for the
// TTL less a tenth (a safety margin; measured from when the last
// acknowledged one was sent): the lease may end soon, and whatever it
// protected must be given up.
// onRenew, when not nil, is called after each acknowledged keep-alive
// with the time it was sent.
//
// KeepAliveLoop counts the first TTL from its own call, which is right
// only if the leader's countdown cannot have started earlier. After Grant
// (whose countdown may start before Grant returns, e.g. when a reply was
// lost and the request retried) or after a keep-alive, use
// KeepAliveLoopFrom with the time that request was sent.
func (c *Client) KeepAliveLoop(ctx context.Context, id int64, ttl time.Duration, onRenew func(sent time.Time)) error {
	return c.KeepAliveLoopFrom(ctx, id, ttl, time.Now(), onRenew)
}

// KeepAliveLoopFrom is KeepAliveLoop counting the first TTL from since:
// the time the Grant that created the lease, or the last keep-alive the
// leader acknowledged, was sent (before sending it, not after its reply).
// If since + ttl - ttl/10 has already passed it returns ErrLeaseExpired
// at once.
func (c *Client) KeepAliveLoopFrom(ctx context.Context, id int64, ttl time.Duration, since time.Time, onRenew func(sent time.Time)) error {
	lastAck := since
	interval := max(ttl/3, 10*time.Millisecond)
	for {
		sent := time.Now()
		deadline := lastAck.Add(leaseWindow(ttl))
		if !sent.Before(deadline) {
			return fmt.Errorf("keep-alive lease %d: %w: none acknowledged for %v of its TTL %v", id, ErrLeaseExpired, leaseWindow(ttl), ttl)
		}
		actx, cancel := context.WithDeadline(ctx, deadline)
		got, err := c.KeepAlive(actx, id)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrLeaseNotFound):
			return err
		case err == nil:
			lastAck = sent
			if got > 0 {
				ttl, interval = got, max(got/3, 10*time.Millisecond)
			}
			if onRenew != nil {
				onRenew(sent)
			}
		}
		wait := time.Until(sent.Add(interval))
		if err != nil {
			wait = min(wait, interval/4)
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
