package server

import (
	"context"
	"fmt"
	"time"

	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// The lease calls of the KV service, their Internal counterparts (a
// follower forwards keep_alive, lease_info and list_leases to the leader,
// which holds the countdowns), and the peer client's side of that
// forwarding. Grants and revokes are writes and travel as writes do.

var _ node.LeaseRemote = (*PeerClient)(nil)

// putLeaseID is the lease a put left its key attached to: the one it
// named, or the one it granted (its index).
func putLeaseID(req *kv.PutRequest, res *kv.WriteResult_) *int64 {
	switch {
	case req.LeaseID != nil:
		return req.LeaseID
	case req.TTLMs != nil:
		id := res.Index
		return &id
	}
	return nil
}

func checkLeaseID(id int64) error {
	if id <= 0 {
		return invalid("lease_id", "must be positive, got %d", id)
	}
	return nil
}

// GrantLease implements kv.KV.
func (h *Handler) GrantLease(ctx context.Context, req *kv.LeaseGrantRequest) (_ *kv.LeaseGrantResponse, err error) {
	defer h.done("grant_lease", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	ttl := req.TTLMs
	res, err := h.apply(ctx, &kv.Command{Op: kv.CommandOp_LEASE_GRANT, TTLMs: &ttl}, req.RequestID)
	if err != nil {
		return nil, err
	}
	return &kv.LeaseGrantResponse{LeaseID: res.Index, TTLMs: ttl, Index: res.Index}, nil
}

// RevokeLease implements kv.KV.
func (h *Handler) RevokeLease(ctx context.Context, req *kv.LeaseRevokeRequest) (_ *kv.LeaseRevokeResponse, err error) {
	defer h.done("revoke_lease", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	id := req.LeaseID
	res, err := h.apply(ctx, &kv.Command{Op: kv.CommandOp_LEASE_REVOKE, LeaseID: &id}, req.RequestID)
	if err != nil {
		return nil, err
	}
	return &kv.LeaseRevokeResponse{Index: res.Index}, nil
}

// KeepAlive implements kv.KV.
func (h *Handler) KeepAlive(ctx context.Context, req *kv.KeepAliveRequest) (_ *kv.KeepAliveResponse, err error) {
	defer h.done("keep_alive", time.Now(), &err)
	return h.keepAlive(ctx, req, h.store.KeepAlive)
}

func (h *Handler) keepAlive(ctx context.Context, req *kv.KeepAliveRequest, fn func(context.Context, uint64) (time.Duration, error)) (*kv.KeepAliveResponse, error) {
	if req == nil {
		return nil, invalid("req", "missing")
	}
	if err := checkLeaseID(req.LeaseID); err != nil {
		return nil, err
	}
	ctx, cancel := h.withRequestTimeout(ctx)
	defer cancel()
	ttl, err := fn(ctx, uint64(req.LeaseID))
	if err != nil {
		return nil, noOutcome(forRead(err))
	}
	return &kv.KeepAliveResponse{LeaseID: req.LeaseID, TTLMs: ttl.Milliseconds()}, nil
}

// LeaseInfo implements kv.KV.
func (h *Handler) LeaseInfo(ctx context.Context, req *kv.LeaseInfoRequest) (_ *kv.LeaseInfo, err error) {
	defer h.done("lease_info", time.Now(), &err)
	return h.leaseInfo(ctx, req, h.store.LeaseInfo)
}

func (h *Handler) leaseInfo(ctx context.Context, req *kv.LeaseInfoRequest, fn func(context.Context, uint64, bool) (node.LeaseInfo, error)) (*kv.LeaseInfo, error) {
	if req == nil {
		return nil, invalid("req", "missing")
	}
	if err := checkLeaseID(req.LeaseID); err != nil {
		return nil, err
	}
	ctx, cancel := h.withRequestTimeout(ctx)
	defer cancel()
	info, err := fn(ctx, uint64(req.LeaseID), req.GetKeys())
	if err != nil {
		return nil, noOutcome(forRead(err))
	}
	out := toLeaseInfo(info.Status)
	if req.GetKeys() {
		out.Keys = info.KeyList
		if out.Keys == nil {
			out.Keys = [][]byte{}
		}
	}
	return out, nil
}

// ListLeases implements kv.KV.
func (h *Handler) ListLeases(ctx context.Context, req *kv.LeaseListRequest) (_ *kv.LeaseListResponse, err error) {
	defer h.done("list_leases", time.Now(), &err)
	return h.listLeases(ctx, req, h.store.Leases)
}

func (h *Handler) listLeases(ctx context.Context, req *kv.LeaseListRequest, fn func(context.Context, uint64, int) ([]lease.Status, bool, error)) (*kv.LeaseListResponse, error) {
	if req == nil {
		return nil, invalid("req", "missing")
	}
	if req.GetAfterID() < 0 {
		return nil, invalid("after_id", "must not be negative, got %d", req.GetAfterID())
	}
	limit := h.cfg.Limits.MaxScanPage
	switch l := int(req.GetLimit()); {
	case l < 0:
		return nil, invalid("limit", "must not be negative, got %d", l)
	case l > 0 && l < limit:
		limit = l
	}
	ctx, cancel := h.withRequestTimeout(ctx)
	defer cancel()
	leases, more, err := fn(ctx, uint64(req.GetAfterID()), limit)
	if err != nil {
		return nil, noOutcome(forRead(err))
	}
	resp := &kv.LeaseListResponse{Leases: make([]*kv.LeaseInfo, len(leases))}
	for i, l := range leases {
		resp.Leases[i] = toLeaseInfo(l)
	}
	if more && len(leases) > 0 {
		last := int64(leases[len(leases)-1].ID)
		resp.Continuation = &last
	}
	return resp, nil
}

// toLeaseInfo is a lease's wire form, without its keys.
func toLeaseInfo(s lease.Status) *kv.LeaseInfo {
	remaining := s.Remaining.Milliseconds()
	if s.Remaining < 0 {
		remaining = -1
	}
	return &kv.LeaseInfo{LeaseID: int64(s.ID), TTLMs: s.TTL, RemainingMs: remaining, KeyCount: int64(s.Keys)}
}

// fromLeaseInfo reads a lease's wire form.
func fromLeaseInfo(l *kv.LeaseInfo) node.LeaseInfo {
	st := lease.Status{Remaining: time.Duration(l.RemainingMs) * time.Millisecond}
	if l.RemainingMs < 0 {
		st.Remaining = -1
	}
	st.ID, st.TTL, st.Keys = uint64(l.LeaseID), l.TTLMs, int(l.KeyCount)
	return node.LeaseInfo{Status: st, KeyList: l.Keys}
}

// KeepAlive implements kv.Internal: a follower's forwarded keep-alive,
// answered here without forwarding again.
func (i *InternalHandler) KeepAlive(ctx context.Context, req *kv.KeepAliveRequest) (_ *kv.KeepAliveResponse, err error) {
	defer i.h.done("internal.keep_alive", time.Now(), &err)
	return i.h.keepAlive(ctx, req, i.store.KeepAliveLocal)
}

// LeaseInfo implements kv.Internal.
func (i *InternalHandler) LeaseInfo(ctx context.Context, req *kv.LeaseInfoRequest) (_ *kv.LeaseInfo, err error) {
	defer i.h.done("internal.lease_info", time.Now(), &err)
	return i.h.leaseInfo(ctx, req, i.store.LeaseInfoLocal)
}

// ListLeases implements kv.Internal.
func (i *InternalHandler) ListLeases(ctx context.Context, req *kv.LeaseListRequest) (_ *kv.LeaseListResponse, err error) {
	defer i.h.done("internal.list_leases", time.Now(), &err)
	return i.h.listLeases(ctx, req, i.store.LeasesLocal)
}

// KeepAlive implements node.LeaseRemote. A failure is ErrUnavailable
// (a keep-alive has no outcome to be unsure of: the client sends another)
// unless the leader answered with an exception.
func (p *PeerClient) KeepAlive(ctx context.Context, leaderID string, id uint64) (time.Duration, error) {
	var res *kv.KeepAliveResponse
	err := p.callLeader(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.KeepAlive(ctx, &kv.KeepAliveRequest{LeaseID: int64(id)})
		return err
	})
	if err != nil {
		return 0, noOutcome(err)
	}
	return time.Duration(res.TTLMs) * time.Millisecond, nil
}

// LeaseInfo implements node.LeaseRemote.
func (p *PeerClient) LeaseInfo(ctx context.Context, leaderID string, id uint64, keys bool) (node.LeaseInfo, error) {
	var res *kv.LeaseInfo
	err := p.callLeader(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		var err error
		res, err = c.Internal.LeaseInfo(ctx, &kv.LeaseInfoRequest{LeaseID: int64(id), Keys: &keys})
		return err
	})
	if err != nil {
		return node.LeaseInfo{}, noOutcome(err)
	}
	return fromLeaseInfo(res), nil
}

// Leases implements node.LeaseRemote.
func (p *PeerClient) Leases(ctx context.Context, leaderID string, after uint64, limit int) ([]lease.Status, bool, error) {
	var res *kv.LeaseListResponse
	err := p.callLeader(ctx, leaderID, func(ctx context.Context, c *transport.Conn) error {
		a, l := int64(after), int32(min(limit, 1<<30))
		var err error
		res, err = c.Internal.ListLeases(ctx, &kv.LeaseListRequest{AfterID: &a, Limit: &l})
		return err
	})
	if err != nil {
		return nil, false, noOutcome(err)
	}
	out := make([]lease.Status, len(res.Leases))
	for i, l := range res.Leases {
		if l == nil {
			return nil, false, fmt.Errorf("%w: leader %s answered a lease list with a missing lease", node.ErrUnavailable, leaderID)
		}
		out[i] = fromLeaseInfo(l).Status
	}
	return out, res.Continuation != nil, nil
}

// withLease sets e's lease_id from a read's leases (the i-th entry's),
// when it has one.
func withLease(e *kv.Entry, leases []uint64, i int) {
	if i < len(leases) && leases[i] != 0 {
		id := int64(leases[i])
		e.LeaseID = &id
	}
}
