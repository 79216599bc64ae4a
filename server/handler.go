package server

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/internal/logging"
	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Store is what the front door needs from a node. *node.Node satisfies it.
type Store interface {
	// Apply proposes a write and returns its result once applied.
	Apply(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error)
	// Get reads one key at the given consistency.
	Get(ctx context.Context, key []byte, c kv.Consistency) (storage.Entry, bool, node.ReadInfo, error)
	// Scan reads a page of [start, end) at the given consistency.
	Scan(ctx context.Context, start, end []byte, reverse bool, limit int, keysOnly bool, c kv.Consistency) ([]storage.Entry, bool, node.ReadInfo, error)
	// Status reports the node's state.
	Status() node.Status
	// ThriftAddr returns the Thrift address of node id, "" when unknown:
	// what a NotLeader answer names.
	ThriftAddr(id string) string
	// Watcher serves watches (server/watch.go).
	Watcher
	// KeepAlive, LeaseInfo and Leases are the lease calls only the leader
	// answers (a follower forwards them); see lease.go.
	KeepAlive(ctx context.Context, id uint64) (time.Duration, error)
	LeaseInfo(ctx context.Context, id uint64, keys bool) (node.LeaseInfo, error)
	Leases(ctx context.Context, after uint64, limit int) ([]lease.Status, bool, error)
}

// Limits bound what one request may carry. Zero fields take the defaults.
type Limits struct {
	// MaxKeySize is the largest key, in bytes. 0: 4096.
	MaxKeySize int
	// MaxValueSize is the largest value, in bytes. 0: 1 MiB.
	MaxValueSize int
	// MaxTxnOps is the most compares, and the most ops in each branch, of a
	// transaction. 0: 128.
	MaxTxnOps int
	// MaxScanPage is the most entries one scan returns; larger limits are
	// lowered to it and the answer carries a continuation. 0: 10000.
	MaxScanPage int
	// MaxResponseBytes bounds the keys and values one answer carries, so
	// it fits a frame: a scan page stops early (with a continuation) and a
	// transaction whose results would exceed it is refused. 0: 4 MiB.
	MaxResponseBytes int
	// MinLeaseTTL and MaxLeaseTTL bound a lease's TTL. 0: 1s and 7 days.
	MinLeaseTTL time.Duration
	MaxLeaseTTL time.Duration
	// MaxLeases is the most leases the cluster holds, and MaxLeaseKeys the
	// most keys attached to one lease: a write that would exceed them is
	// refused. 0: 100,000 and 10,000.
	MaxLeases    int
	MaxLeaseKeys int
}

// Default limits.
const (
	DefaultMaxKeySize   = 4 << 10
	DefaultMaxValueSize = 1 << 20
	DefaultMaxTxnOps    = 128
	DefaultMaxScanPage  = 10000
	// DefaultMaxResponseBytes is half the default 8 MiB frame.
	DefaultMaxResponseBytes = 4 << 20
	DefaultMinLeaseTTL      = time.Second
	DefaultMaxLeaseTTL      = 7 * 24 * time.Hour
	DefaultMaxLeases        = 100000
	DefaultMaxLeaseKeys     = 10000
)

// Config configures a Handler.
type Config struct {
	Limits Limits
	// RequestTimeout bounds each request's time in the node, in the absence
	// of a shorter deadline from the transport. 0: 5s.
	RequestTimeout time.Duration
	// Version is reported by Status.
	Version string
	// Observe, when set, receives every request's method ("get", and
	// "cluster.topology" or "internal.apply" for the other services),
	// outcome (see Outcome) and duration.
	Observe func(method, outcome string, d time.Duration)
	// Logger; nil discards.
	Logger *slog.Logger
	// Watch bounds watches (server/watch.go).
	Watch WatchConfig
}

// Handler implements the generated kv.KV service over a Store.
type Handler struct {
	store  Store
	cfg    Config
	logger *slog.Logger

	watching atomic.Int64 // watches being served (server/watch.go)
}

var _ kv.KV = (*Handler)(nil)

// New returns a Handler serving store.
func New(store Store, cfg Config) *Handler {
	if cfg.Limits.MaxKeySize <= 0 {
		cfg.Limits.MaxKeySize = DefaultMaxKeySize
	}
	if cfg.Limits.MaxValueSize <= 0 {
		cfg.Limits.MaxValueSize = DefaultMaxValueSize
	}
	if cfg.Limits.MaxTxnOps <= 0 {
		cfg.Limits.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.Limits.MaxScanPage <= 0 {
		cfg.Limits.MaxScanPage = DefaultMaxScanPage
	}
	if cfg.Limits.MaxResponseBytes <= 0 {
		cfg.Limits.MaxResponseBytes = DefaultMaxResponseBytes
	}
	cfg.Limits.MinLeaseTTL = cmp.Or(cfg.Limits.MinLeaseTTL, DefaultMinLeaseTTL)
	cfg.Limits.MaxLeaseTTL = cmp.Or(cfg.Limits.MaxLeaseTTL, DefaultMaxLeaseTTL)
	cfg.Limits.MaxLeases = cmp.Or(cfg.Limits.MaxLeases, DefaultMaxLeases)
	cfg.Limits.MaxLeaseKeys = cmp.Or(cfg.Limits.MaxLeaseKeys, DefaultMaxLeaseKeys)
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Handler{store: store, cfg: cfg, logger: logger.With("component", logging.ComponentServer)}
}

// NewProcessor returns a processor serving h both as the default service
// (plain clients) and under the multiplexed name "KV", and the Cluster and
// Internal services when given.
func NewProcessor(h *Handler, cluster *ClusterHandler, internal *InternalHandler) thrift.TProcessor {
	p := kv.NewKVProcessor(h)
	mp := thrift.NewTMultiplexedProcessor()
	mp.RegisterDefault(p)
	mp.RegisterProcessor(transport.ServiceKV, p)
	if cluster != nil {
		mp.RegisterProcessor(transport.ServiceCluster, kv.NewClusterProcessor(cluster))
	}
	if internal != nil {
		mp.RegisterProcessor(transport.ServiceInternal, kv.NewInternalProcessor(internal))
	}
	return mp
}

// done ends every service call, Cluster and Internal ones included: a
// panic becomes errInternal (the node stays up and the client gets an
// answer), the error is mapped once to the exception the client sees, and
// the call goes to Observe. Defer it first in each method, with the
// method's named error result.
func (h *Handler) done(method string, start time.Time, errp *error) {
	if r := recover(); r != nil {
		h.logger.Error("handler panic", "method", method, "err", fmt.Sprint(r), "stack", string(debug.Stack()))
		*errp = errInternal
	}
	*errp = toThrift(*errp, h.store.ThriftAddr)
	if h.cfg.Observe != nil {
		h.cfg.Observe(method, Outcome(*errp), time.Since(start))
	}
}

// withRequestTimeout bounds a request's time in the node by the
// configured RequestTimeout.
func (h *Handler) withRequestTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.cfg.RequestTimeout)
}

func consistency(c *kv.Consistency) (kv.Consistency, error) {
	if c == nil {
		return kv.Consistency_LINEARIZABLE, nil
	}
	switch *c {
	case kv.Consistency_LINEARIZABLE, kv.Consistency_STALE:
		return *c, nil
	}
	return 0, invalid("consistency", "unknown consistency %d", int64(*c))
}

// Get implements kv.KV.
func (h *Handler) Get(ctx context.Context, req *kv.GetRequest) (_ *kv.GetResponse, err error) {
	defer h.done("get", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	if err := h.checkKey("key", req.Key); err != nil {
		return nil, err
	}
	c, err := consistency(req.Consistency)
	if err != nil {
		return nil, err
	}
	ctx, cancel := h.withRequestTimeout(ctx)
	defer cancel()
	e, found, info, err := h.store.Get(ctx, req.Key, c)
	if err != nil {
		return nil, forRead(err)
	}
	resp := &kv.GetResponse{Found: found, Info: readInfo(info)}
	if found {
		resp.Entry = toEntry(e, false)
		withLease(resp.Entry, info.Leases, 0)
	}
	return resp, nil
}

// Put implements kv.KV.
func (h *Handler) Put(ctx context.Context, req *kv.PutRequest) (_ *kv.PutResponse, err error) {
	defer h.done("put", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	cmd := &kv.Command{Op: kv.CommandOp_PUT, Key: req.Key, Value: nonNil(req.Value), ReturnPrevious: req.ReturnPrevious,
		LeaseID: req.LeaseID, TTLMs: req.TTLMs}
	res, err := h.apply(ctx, cmd, req.RequestID)
	if err != nil {
		return nil, err
	}
	resp := &kv.PutResponse{Index: res.Index, CreateIndex: res.Index, Previous: res.Entry, LeaseID: putLeaseID(req, res)}
	if res.CreateIndex != nil {
		resp.CreateIndex = *res.CreateIndex
	}
	return resp, nil
}

// DeleteKey implements kv.KV.
func (h *Handler) DeleteKey(ctx context.Context, req *kv.DeleteRequest) (_ *kv.DeleteResponse, err error) {
	defer h.done("delete", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	cmd := &kv.Command{Op: kv.CommandOp_DELETE, Key: req.Key, ReturnPrevious: req.ReturnPrevious}
	res, err := h.apply(ctx, cmd, req.RequestID)
	if err != nil {
		return nil, err
	}
	return &kv.DeleteResponse{Index: res.Index, Deleted: res.Succeeded, Previous: res.Entry}, nil
}

// Cas implements kv.KV.
func (h *Handler) Cas(ctx context.Context, req *kv.CASRequest) (_ *kv.CASResponse, err error) {
	defer h.done("cas", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	cmd := &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: req.Key, Value: req.Value, ExpectedValue: req.ExpectedValue, ExpectedModIndex: req.ExpectedModIndex, LeaseID: req.LeaseID}
	if req.GetRemove() {
		cmd.Op = kv.CommandOp_CAS_DELETE
	}
	res, err := h.apply(ctx, cmd, req.RequestID)
	if err != nil {
		return nil, err
	}
	return &kv.CASResponse{Succeeded: res.Succeeded, Index: res.Index, Current: res.Entry}, nil
}

// Scan implements kv.KV.
func (h *Handler) Scan(ctx context.Context, req *kv.ScanRequest) (_ *kv.ScanResponse, err error) {
	defer h.done("scan", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	start, end, limit, err := h.scanBounds(req)
	if err != nil {
		return nil, err
	}
	c, err := consistency(req.Consistency)
	if err != nil {
		return nil, err
	}
	resp := &kv.ScanResponse{Entries: []*kv.Entry{}}
	ctx, cancel := h.withRequestTimeout(ctx)
	defer cancel()
	if start != nil && end != nil && bytes.Compare(start, end) >= 0 {
		// Empty range; still honour the consistency so the answer's info is real.
		_, _, info, err := h.store.Scan(ctx, start, start, req.GetReverse(), 1, true, c)
		if err != nil {
			return nil, forRead(err)
		}
		resp.Info = readInfo(info)
		return resp, nil
	}
	entries, more, info, err := h.store.Scan(ctx, start, end, req.GetReverse(), limit, req.GetKeysOnly(), c)
	if err != nil {
		return nil, forRead(err)
	}
	resp.Info = readInfo(info)
	// Stop the page at the byte budget (always keeping one entry).
	budget := h.cfg.Limits.MaxResponseBytes
	for i, e := range entries {
		size := len(e.Key) + 32
		if !req.GetKeysOnly() {
			size += len(e.Value)
		}
		if budget -= size; budget < 0 && i > 0 {
			entries, more = entries[:i], true
			break
		}
	}
	resp.Entries = make([]*kv.Entry, len(entries))
	for i, e := range entries {
		resp.Entries[i] = toEntry(e, req.GetKeysOnly())
		withLease(resp.Entries[i], info.Leases, i)
	}
	if more && len(entries) > 0 {
		last := entries[len(entries)-1].Key
		if req.GetReverse() {
			resp.Continuation = append([]byte(nil), last...)
		} else {
			resp.Continuation = append(append(make([]byte, 0, len(last)+1), last...), 0)
		}
	}
	return resp, nil
}

// Txn implements kv.KV.
func (h *Handler) Txn(ctx context.Context, req *kv.TxnRequest) (_ *kv.TxnResponse, err error) {
	defer h.done("txn", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	cmd := &kv.Command{Op: kv.CommandOp_TXN, Compares: req.Compares, Success: req.Success, Failure: req.Failure}
	if cmd.Compares == nil {
		cmd.Compares = []*kv.Compare{}
	}
	if cmd.Success == nil {
		cmd.Success = []*kv.Op{}
	}
	if cmd.Failure == nil {
		cmd.Failure = []*kv.Op{}
	}
	res, err := h.apply(ctx, cmd, req.RequestID)
	if err != nil {
		return nil, err
	}
	results := res.Results
	if results == nil {
		results = []*kv.OpResult_{}
	}
	return &kv.TxnResponse{Succeeded: res.Succeeded, Index: res.Index, Results: results}, nil
}

// Status implements kv.KV.
func (h *Handler) Status(ctx context.Context) (_ *kv.StatusResponse, err error) {
	defer h.done("status", time.Now(), &err)
	return statusResponse(h.store.Status(), h.cfg.Version), nil
}

// apply gives cmd the request id, validates and stamps it with the front
// door's limits (checkCommand), and proposes it.
func (h *Handler) apply(ctx context.Context, cmd *kv.Command, id *kv.RequestID) (*kv.WriteResult_, error) {
	setID(cmd, id)
	if err := h.checkCommand(cmd); err != nil {
		return nil, err
	}
	ctx, cancel := h.withRequestTimeout(ctx)
	defer cancel()
	res, err := h.store.Apply(ctx, cmd)
	if err != nil {
		return nil, withRequestID(err, id)
	}
	return res, nil
}

func setID(cmd *kv.Command, id *kv.RequestID) {
	if id == nil {
		return
	}
	cmd.ClientID = &id.ClientID
	cmd.Sequence = &id.Sequence
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
