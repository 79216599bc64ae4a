package server

import (
	"context"
	"time"

	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// LeaderStore is what the Internal service needs: applying without
// forwarding, the leader's read index and this node's view of leadership. *node.Node satisfies it.
type LeaderStore interface {
	ApplyLocal(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error)
	ReadIndex(ctx context.Context) (uint64, error)
	LeaderView() (term uint64, leaderID string)
	Status() node.Status
	// The lease calls a follower forwards, answered without forwarding.
	KeepAliveLocal(ctx context.Context, id uint64) (time.Duration, error)
	LeaseInfoLocal(ctx context.Context, id uint64, keys bool) (node.LeaseInfo, error)
	LeasesLocal(ctx context.Context, after uint64, limit int) ([]lease.Status, bool, error)
}

// InternalHandler implements the node-to-node kv.Internal service.
type InternalHandler struct {
	h       *Handler
	store   LeaderStore
	nodeID  string
	keyring Keyring // nil when gossip is off
}

var _ kv.Internal = (*InternalHandler)(nil)

// NewInternal returns the Internal service of the front door h over store;
// keyring is the node's gossip keyring (nil when gossip is off).
func NewInternal(h *Handler, store LeaderStore, keyring Keyring) *InternalHandler {
	return &InternalHandler{h: h, store: store, nodeID: store.Status().ID, keyring: keyring}
}

// Apply implements kv.Internal: a write forwarded by a follower, applied
// here without forwarding again.
func (i *InternalHandler) Apply(ctx context.Context, cmd *kv.Command) (_ *kv.WriteResult_, err error) {
	defer i.h.done("internal.apply", time.Now(), &err)
	if cmd == nil {
		return nil, invalid("cmd", "missing")
	}
	var id *kv.RequestID
	if cmd.ClientID != nil && cmd.Sequence != nil {
		id = &kv.RequestID{ClientID: *cmd.ClientID, Sequence: *cmd.Sequence}
	}
	// The leader checks what it applies with its own limits, whoever sent
	// it, and lowers the answer budget the sender stamped to its own.
	if err := i.h.checkCommand(cmd); err != nil {
		return nil, withRequestID(err, id)
	}
	ctx, cancel := i.h.withRequestTimeout(ctx)
	defer cancel()
	res, err := i.store.ApplyLocal(ctx, cmd)
	if err != nil {
		return nil, withRequestID(err, id)
	}
	return res, nil
}

// ReadIndex implements kv.Internal.
func (i *InternalHandler) ReadIndex(ctx context.Context) (_ *kv.ReadIndexResponse, err error) {
	defer i.h.done("internal.read_index", time.Now(), &err)
	ctx, cancel := i.h.withRequestTimeout(ctx)
	defer cancel()
	idx, err := i.store.ReadIndex(ctx)
	if err != nil {
		return nil, noOutcome(err)
	}
	return &kv.ReadIndexResponse{Index: int64(idx), Term: int64(i.store.Status().Term)}, nil
}

// LeaderView implements kv.Internal: this node's term and leader, as they
// stand when the request arrives (a leader confirming reads asks).
func (i *InternalHandler) LeaderView(ctx context.Context) (_ *kv.LeaderView, err error) {
	defer i.h.done("internal.leader_view", time.Now(), &err)
	term, leader := i.store.LeaderView()
	v := &kv.LeaderView{Term: int64(term)}
	if leader != "" {
		v.LeaderID = &leader
	}
	return v, nil
}
