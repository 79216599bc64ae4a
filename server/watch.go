package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// Watch defaults.
const (
	// DefaultWatchTimeout is how long a watch without timeout_ms waits.
	DefaultWatchTimeout = 10 * time.Second
	// DefaultWatchMaxTimeout is the longest a watch may wait.
	DefaultWatchMaxTimeout = 60 * time.Second
	// DefaultMaxWatches is the most watches waiting at once on a node.
	// Each holds a connection (and the goroutine serving it) while it
	// waits, so it stays below the default connection cap (1024), which
	// leaves room for other requests.
	DefaultMaxWatches = 1000
)

// WatchConfig bounds watches. Zero fields take the defaults.
type WatchConfig struct {
	// DefaultTimeout is the wait of a watch that sets no timeout_ms. 0:
	// DefaultWatchTimeout.
	DefaultTimeout time.Duration
	// MaxTimeout is the longest wait; a larger timeout_ms is lowered to
	// it. 0: DefaultWatchMaxTimeout.
	MaxTimeout time.Duration
	// MaxWaiting is the most watches served at once; more are refused
	// with Unavailable. 0: DefaultMaxWatches.
	MaxWaiting int
}

func (c WatchConfig) withDefaults() WatchConfig {
	if c.DefaultTimeout <= 0 {
		c.DefaultTimeout = DefaultWatchTimeout
	}
	if c.MaxTimeout <= 0 {
		c.MaxTimeout = DefaultWatchMaxTimeout
	}
	if c.DefaultTimeout > c.MaxTimeout {
		c.DefaultTimeout = c.MaxTimeout
	}
	if c.MaxWaiting <= 0 {
		c.MaxWaiting = DefaultMaxWatches
	}
	return c
}

// Watcher is what a watch needs from a node. *node.Node satisfies it; see
// node.Node.Watch for the contract: consistency first, then a wait for an
// event of q until wait has passed, an answer without events when none
// came, and an error matching fsm.ErrCompacted for an after index older
// than the node's history.
type Watcher interface {
	Watch(ctx context.Context, q fsm.WatchQuery, c kv.Consistency, wait time.Duration) (fsm.WatchResult, node.ReadInfo, error)
}

// errTooManyWatches refuses a watch beyond WatchConfig.MaxWaiting.
var errTooManyWatches = errors.New("too many watches waiting")

// Watch implements kv.KV: a blocking query on the serving node's own
// applied state (see kv.thrift's WatchRequest). It holds the calling
// connection's goroutine while it waits and starts none of its own.
func (h *Handler) Watch(ctx context.Context, req *kv.WatchRequest) (_ *kv.WatchResponse, err error) {
	defer h.done("watch", time.Now(), &err)
	if req == nil {
		return nil, invalid("req", "missing")
	}
	q, err := h.watchQuery(req)
	if err != nil {
		return nil, err
	}
	c, err := consistency(req.Consistency)
	if err != nil {
		return nil, err
	}
	wc := h.cfg.Watch.withDefaults()
	wait := wc.DefaultTimeout
	if req.TimeoutMs != nil {
		wait = min(time.Duration(*req.TimeoutMs)*time.Millisecond, wc.MaxTimeout)
	}
	if n := h.watching.Add(1); n > int64(wc.MaxWaiting) {
		h.watching.Add(-1)
		return nil, fmt.Errorf("%w: %w: %d on this node (--max-watches); try another node or later", node.ErrUnavailable, errTooManyWatches, wc.MaxWaiting)
	}
	defer h.watching.Add(-1)
	// The whole call, read index included, gets the wait plus the request
	// timeout, so the generic timeout never cuts a watch short.
	ctx, cancel := context.WithTimeout(ctx, wait+h.cfg.RequestTimeout)
	defer cancel()
	res, info, err := h.store.Watch(ctx, q, c, wait)
	if err != nil {
		return nil, forRead(err)
	}
	resp := &kv.WatchResponse{Events: make([]*kv.Event, len(res.Events)), ResumeIndex: int64(res.Resume), Info: readInfo(info)}
	for i, e := range res.Events {
		resp.Events[i] = toEvent(e, q.KeysOnly)
	}
	return resp, nil
}

// Watching returns the number of watches being served.
func (h *Handler) Watching() int { return int(h.watching.Load()) }

// watchQuery checks a WatchRequest's fields and turns them into a query:
// exactly one of key, prefix (empty: every key) or a range, and no
// negative numbers.
func (h *Handler) watchQuery(req *kv.WatchRequest) (fsm.WatchQuery, error) {
	var q fsm.WatchQuery
	ranged := req.StartKey != nil || req.EndKey != nil
	switch {
	case req.Key != nil && (req.Prefix != nil || ranged):
		return q, invalid("key", "set only one of key, prefix, and start_key/end_key")
	case req.Prefix != nil && ranged:
		return q, invalid("prefix", "set only one of key, prefix, and start_key/end_key")
	case req.Key != nil:
		if err := h.checkKey("key", req.Key); err != nil {
			return q, err
		}
		q.Start = req.Key
		q.End = append(append(make([]byte, 0, len(req.Key)+1), req.Key...), 0)
	case req.Prefix != nil:
		if len(req.Prefix) > h.cfg.Limits.MaxKeySize {
			return q, invalid("prefix", "%d bytes exceeds the limit of %d", len(req.Prefix), h.cfg.Limits.MaxKeySize)
		}
		if len(req.Prefix) > 0 {
			q.Start = req.Prefix
			q.End = PrefixEnd(req.Prefix)
		}
	case ranged:
		for _, b := range []struct {
			name string
			v    []byte
		}{{"start_key", req.StartKey}, {"end_key", req.EndKey}} {
			if len(b.v) > h.cfg.Limits.MaxKeySize+1 {
				return q, invalid(b.name, "%d bytes exceeds the limit of %d", len(b.v), h.cfg.Limits.MaxKeySize)
			}
		}
		if len(req.StartKey) > 0 {
			q.Start = req.StartKey
		}
		if len(req.EndKey) > 0 {
			q.End = req.EndKey
		}
	default:
		return q, invalid("key", "one of key, prefix, or start_key/end_key is required (prefix \"\" watches every key)")
	}
	a := req.GetAfterIndex()
	if a < 0 {
		return q, invalid("after_index", "must not be negative, got %d", a)
	}
	q.After = uint64(a)
	if req.TimeoutMs != nil && *req.TimeoutMs < 0 {
		return q, invalid("timeout_ms", "must not be negative, got %d", *req.TimeoutMs)
	}
	q.MaxEvents = h.cfg.Limits.MaxScanPage
	if req.MaxEvents != nil {
		switch m := int(*req.MaxEvents); {
		case m < 0:
			return q, invalid("max_events", "must not be negative, got %d", m)
		case m > 0 && m < q.MaxEvents:
			q.MaxEvents = m
		}
	}
	q.MaxBytes = h.cfg.Limits.MaxResponseBytes
	// MaxResponseBytes is half the frame: an answer may pass it by one
	// index, never past the frame (less room for the rest of the answer).
	q.LimitBytes = 2 * h.cfg.Limits.MaxResponseBytes * 15 / 16
	q.KeysOnly = req.GetKeysOnly()
	return q, nil
}

var eventTypes = map[fsm.EventType]kv.EventType{
	fsm.EventPut:    kv.EventType_PUT,
	fsm.EventDelete: kv.EventType_DELETE,
}

// toEvent converts a history event: a PUT carries the entry as written.
func toEvent(e fsm.Event, keysOnly bool) *kv.Event {
	out := &kv.Event{Type: eventTypes[e.Type], Key: e.Key, Index: int64(e.Index)}
	if e.Type == fsm.EventPut {
		out.Entry = &kv.Entry{Key: e.Key, CreateIndex: int64(e.CreateIndex), ModIndex: int64(e.Index)}
		if !keysOnly {
			out.Entry.Value = e.Value
			if out.Entry.Value == nil {
				out.Entry.Value = []byte{}
			}
		}
	}
	return out
}
