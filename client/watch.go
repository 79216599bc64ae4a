package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// DefaultWatchWait is how long each watch call waits on the server for an event when WithWatchWait
// is not given. It is below the server's default maximum (60 s).
const DefaultWatchWait = 30 * time.Second

// WatchEventType says what a WatchEvent is.
type WatchEventType int

const (
	// WatchPut: Key was written; Entry is the entry as written.
	WatchPut WatchEventType = iota + 1
	// WatchDelete: Key was deleted.
	WatchDelete
	// WatchResync: the changes between the last event delivered (or the starting index) and Index
	// can no longer be delivered: every node the client knows (each asked in turn) had dropped them
	// from its history (Compacted).
	// Re-read the watched keys (a Scan), then apply the events that follow, all with indexes above
	// Index. Events at indexes the re-read already reflects may follow; each carries its mod index.
	WatchResync
	// WatchFailed: the watch stopped for good; Err says why (an invalid request, the client closed).
	// It is the last event before the channel closes.
	WatchFailed
)

func (t WatchEventType) String() string {
	switch t {
	case WatchPut:
		return "PUT"
	case WatchDelete:
		return "DELETE"
	case WatchResync:
		return "RESYNC"
	case WatchFailed:
		return "FAILED"
	}
	return fmt.Sprintf("WatchEventType(%d)", int(t))
}

// WatchEvent is one thing a watch delivers.
type WatchEvent struct {
	Type WatchEventType
	// Key is the changed key (PUT and DELETE).
	Key []byte
	// Index is the Raft index of the change. For WatchResync, the index the watch continues after:
	// the answering node's applied index.
	Index int64
	// Entry is a PUT's entry as written (its ModIndex is Index); without Value under
	// WithWatchKeysOnly.
	Entry *kv.Entry
	// Oldest is, for WatchResync, the oldest index the answering node's history covered.
	Oldest int64
	// Err is why the watch failed (WatchFailed only).
	Err error
}

// WatchOption changes a watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	prefix      bool
	keysOnly    bool
	wait        time.Duration
	maxEvents   int32
	consistency kv.Consistency
}

// WithPrefix watches every key starting with the given key (an empty key: every key) instead of the
// key alone.
func WithPrefix() WatchOption { return func(o *watchOptions) { o.prefix = true } }

// WithWatchKeysOnly leaves values out of the events' entries.
func WithWatchKeysOnly() WatchOption { return func(o *watchOptions) { o.keysOnly = true } }

// WithWatchWait sets how long each call waits on the server for an event (the request's timeout_ms;
// the server lowers it to its maximum). 0 means DefaultWatchWait.
func WithWatchWait(d time.Duration) WatchOption { return func(o *watchOptions) { o.wait = d } }

// WithWatchMaxEvents caps the events of one answer (never splitting an index). 0 means the server's
// page.
func WithWatchMaxEvents(n int32) WatchOption { return func(o *watchOptions) { o.maxEvents = n } }

// WithWatchConsistency serves the watch at c instead of Config.Consistency. LINEARIZABLE (the
// default) makes each node first catch up with the leader, so a watch started after a write was
// acknowledged sees it even on a node that was behind.
func WithWatchConsistency(c kv.Consistency) WatchOption {
	return func(o *watchOptions) { o.consistency = c }
}

// Watch delivers, in index order, every change of key (or, WithPrefix, of every key with that
// prefix) made at an index above fromIndex (0: from the start of the history), until ctx ends; then
// it closes the channel. A transaction's changes share an index and come in the order it made them.
//
// Any node serves a watch. Each call is a blocking query (KV.watch) that answers when there is an
// event or after WithWatchWait; the next resumes after the last index delivered. When a node fails
// (a broken connection, Unavailable, NotLeader, a timeout) the watch moves to another member with
// backoff and resumes there from the last index delivered, so no event is lost or repeated. A node
// whose history no longer reaches that index (Compacted; a node restarted from a snapshot keeps none
// from before it) sends the watch to the next node; when every known node has said so it delivers a
// WatchResync event and continues from the last answering node's index: see WatchResync. A request the cluster refuses as
// invalid ends the watch with a WatchFailed event.
//
// The caller must keep receiving until the channel closes (or end ctx): events wait for it. Each
// watch uses connections of its own, with a socket timeout above its wait.
func (c *Client) Watch(ctx context.Context, key []byte, fromIndex int64, opts ...WatchOption) (<-chan WatchEvent, error) {
	o := watchOptions{wait: DefaultWatchWait, consistency: c.consistency}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case fromIndex < 0:
		return nil, fmt.Errorf("watch: %w", &InvalidArgumentError{Field: "from_index", Reason: "must not be negative"})
	case len(key) == 0 && !o.prefix:
		return nil, fmt.Errorf("watch: %w", &InvalidArgumentError{Field: "key", Reason: "must not be empty (use WithPrefix to watch every key)"})
	case o.wait < 0 || o.wait > time.Duration(1<<31-1)*time.Millisecond:
		return nil, fmt.Errorf("watch: %w", &InvalidArgumentError{Field: "wait", Reason: "out of range"})
	}
	if o.wait == 0 {
		o.wait = DefaultWatchWait
	}
	req := kv.WatchRequest{
		TimeoutMs:   thriftI32(int32(o.wait / time.Millisecond)),
		Consistency: kv.ConsistencyPtr(o.consistency),
	}
	if o.prefix {
		req.Prefix = append([]byte{}, key...)
	} else {
		req.Key = append([]byte(nil), key...)
	}
	if o.keysOnly {
		req.KeysOnly = &o.keysOnly
	}
	if o.maxEvents > 0 {
		req.MaxEvents = &o.maxEvents
	}
	// A call may wait its whole wait on the server after a read index: the socket must outlast it.
	dial := c.pool.Config()
	dial.RequestTimeout += o.wait
	w := &watcher{c: c, req: req, after: fromIndex, out: make(chan WatchEvent, 16), pool: transport.NewPool(&dial, 1)}
	go w.run(ctx)
	return w.out, nil
}

func thriftI32(v int32) *int32 { return &v }

// watcher is one Watch: its loop of calls, and where it stands.
type watcher struct {
	c     *Client
	req   kv.WatchRequest // the template; AfterIndex is set per call
	after int64           // every event up to it has been delivered
	out   chan WatchEvent
	pool  *transport.Pool
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.out)
	defer w.pool.Close()
	rt := w.c.router.start(ctx, toAny)
	failures := 0
	// The nodes asked about w.after since one answered Compacted: true for Compacted, false for
	// a node that failed.
	compacted := map[string]bool{}
	compactedAt := w.after
	for ctx.Err() == nil {
		addr := rt.current()
		req := w.req
		req.AfterIndex = w.after
		var resp *kv.WatchResponse
		sent, err := w.c.attempt(ctx, w.pool, addr, func(ctx context.Context, conn *transport.Conn) (err error) {
			resp, err = conn.KV.Watch(ctx, &req)
			return err
		})
		if ctx.Err() != nil {
			return
		}
		var gone *kv.Compacted
		switch {
		case err == nil:
			failures = 0
			clear(compacted)
			w.c.router.worked(addr)
			if !w.deliver(ctx, resp) {
				return
			}
			continue
		case errors.As(err, &gone):
			failures = 0
			// A node that restarted from a snapshot keeps no history before it; another node may
			// still hold it. Resync only when every node the client knows has been asked about this
			// index since: each said Compacted or failed (a node that is down cannot hold the watch
			// back for ever).
			if compactedAt != w.after {
				clear(compacted)
				compactedAt = w.after
			}
			compacted[addr] = true
			if !w.allSaid(compacted) {
				rt.next()
				continue
			}
			clear(compacted)
			if !w.send(ctx, WatchEvent{Type: WatchResync, Index: gone.CurrentIndex, Oldest: gone.OldestIndex}) {
				return
			}
			w.after = max(w.after, gone.CurrentIndex)
			continue
		}
		kind, cerr := classify(err, sent)
		if kind == outcomeFinal || kind == outcomeFinalUnknown {
			w.send(ctx, WatchEvent{Type: WatchFailed, Err: fmt.Errorf("watch: %w", cerr)})
			return
		}
		w.c.logger.Debug("watch moving on", "addr", addr, "err", cerr, "raft_index", w.after)
		if len(compacted) > 0 && compactedAt == w.after && !compacted[addr] {
			compacted[addr] = false
		}
		var nl *NotLeaderError
		if !errors.As(cerr, &nl) || !rt.redirect(nl.LeaderAddr) {
			rt.failed()
		}
		if !w.c.sleep(ctx, failures, time.Now().Add(time.Hour)) {
			return
		}
		failures++
		rt.next()
	}
}

// allSaid reports whether every node the client knows has been asked: it is in asked, having
// said Compacted or failed.
func (w *watcher) allSaid(asked map[string]bool) bool {
	for _, a := range w.c.router.candidates(toAny, 0) {
		if _, ok := asked[a]; !ok {
			return false
		}
	}
	return true
}

// deliver sends an answer's events above the last index delivered, and moves on to its resume
// index. It reports false when ctx ended first.
func (w *watcher) deliver(ctx context.Context, resp *kv.WatchResponse) bool {
	from := w.after
	for _, e := range resp.Events {
		if e == nil || e.Index <= from {
			continue // never twice: an answer's events are whole indexes above after
		}
		ev := WatchEvent{Type: WatchPut, Key: e.Key, Index: e.Index, Entry: e.Entry}
		if e.Type == kv.EventType_DELETE {
			ev.Type, ev.Entry = WatchDelete, nil
		}
		if !w.send(ctx, ev) {
			return false
		}
		w.after = e.Index
	}
	w.after = max(w.after, resp.ResumeIndex)
	return true
}

func (w *watcher) send(ctx context.Context, ev WatchEvent) bool {
	select {
	case w.out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
