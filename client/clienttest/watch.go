package clienttest

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// watchHistory is a fake's record of every change, for Watch. Guarded by
// Server.mu.
type watchHistory struct {
	events  []*kv.Event
	floor   int64         // events at or below it are forgotten
	changed chan struct{} // closed at the next change; nil when nobody waits
}

func (h *watchHistory) add(e *kv.Event) {
	h.events = append(h.events, e)
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

func (h *watchHistory) put(e *kv.Entry) {
	h.add(&kv.Event{Type: kv.EventType_PUT, Key: e.Key, Index: e.ModIndex, Entry: cloneEntry(e, true)})
}

func (h *watchHistory) del(key []byte, idx int64) {
	h.add(&kv.Event{Type: kv.EventType_DELETE, Key: slices.Clone(key), Index: idx})
}

// wait returns a channel closed at the next change.
func (h *watchHistory) wait() <-chan struct{} {
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

// Forget drops the fake's change history up to and including index floor:
// a later watch from an older index gets Compacted{floor+1, current}.
func (s *Server) Forget(floor int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history.floor = floor
	s.history.events = slices.DeleteFunc(s.history.events, func(e *kv.Event) bool { return e.Index <= floor })
}

// watchMatches reports whether key is one req watches.
func watchMatches(req *kv.WatchRequest, key []byte) bool {
	switch {
	case req.Key != nil:
		return bytes.Equal(key, req.Key)
	case req.Prefix != nil:
		return bytes.HasPrefix(key, req.Prefix)
	}
	return (len(req.StartKey) == 0 || bytes.Compare(key, req.StartKey) >= 0) && (len(req.EndKey) == 0 || bytes.Compare(key, req.EndKey) < 0)
}

// Watch implements kv.KV as a blocking query on the fake's history: the
// events after after_index (at most max_events, never splitting an index),
// waiting up to timeout_ms (default 10 s) for one. Its hook sees the method
// "watch" and the watched key (or prefix, or start key).
func (s *Server) Watch(ctx context.Context, req *kv.WatchRequest) (*kv.WatchResponse, error) {
	key := req.Key
	if key == nil {
		key = req.Prefix
	}
	if key == nil {
		key = req.StartKey
	}
	if _, err := s.begin(ctx, Call{Method: "watch", Key: key}); err != nil {
		return nil, err
	}
	wait := 10 * time.Second
	if req.TimeoutMs != nil {
		wait = time.Duration(*req.TimeoutMs) * time.Millisecond
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	after := req.GetAfterIndex()
	for {
		s.mu.Lock()
		if after < s.history.floor {
			defer s.mu.Unlock()
			return nil, &kv.Compacted{OldestIndex: s.history.floor + 1, CurrentIndex: s.index}
		}
		resp := &kv.WatchResponse{Events: []*kv.Event{}, ResumeIndex: max(s.index, after), Info: s.info(req.GetConsistency())}
		for _, e := range s.history.events {
			if e.Index <= after || !watchMatches(req, e.Key) {
				continue
			}
			if n := len(resp.Events); n > 0 && req.GetMaxEvents() > 0 && n >= int(req.GetMaxEvents()) && e.Index != resp.Events[n-1].Index {
				resp.ResumeIndex = resp.Events[n-1].Index
				break
			}
			resp.Events = append(resp.Events, e)
		}
		ch := s.history.wait()
		s.mu.Unlock()
		if len(resp.Events) > 0 {
			return resp, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return resp, nil
		case <-ctx.Done():
			return resp, nil
		}
	}
}
