package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// ErrCompacted is returned by Watch for an after index older than the
// history: the events just after it are no longer kept. Errors that match
// it are *CompactedError values.
var ErrCompacted = errors.New("history compacted")

// CompactedError says which indexes the history still covers.
type CompactedError struct {
	// Oldest is the oldest index the history covers: Watch serves after
	// indexes from Oldest-1 on.
	Oldest uint64
	// Current is the applied index when Watch answered (never below the
	// history's floor): where a watch resumes after re-reading.
	Current uint64
	// Oversized, when not 0, is the index whose matching events are too
	// large for one answer (WatchQuery.LimitBytes); Oldest is one above it.
	Oversized uint64
}

func (e *CompactedError) Error() string {
	if e.Oversized != 0 {
		return fmt.Sprintf("%v: the changes at index %d do not fit in one answer (applied %d)", ErrCompacted, e.Oversized, e.Current)
	}
	return fmt.Sprintf("%v: history starts at index %d (applied %d)", ErrCompacted, e.Oldest, e.Current)
}

// EventWireBytes is what an event costs in an answer, as MaxBytes and
// LimitBytes count it: a PUT carries its key twice (the event's and the
// entry's) and its value; a DELETE its key; each some field overhead.
func EventWireBytes(e *Event) int {
	if e.Type == EventPut {
		return 2*len(e.Key) + len(e.Value) + 48
	}
	return len(e.Key) + 24
}

// Is makes errors.Is(err, ErrCompacted) hold.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// DefaultHistoryBytes is the change history's size when Config.HistoryBytes
// is 0: 8 MiB, about 80,000 changes of 16-byte keys and 10-byte values, or
// a minute and more of a small board's write rate, so a watcher that
// reconnects after a node failure resumes instead of resyncing, in a
// fraction of a 1 GB board's memory.
const DefaultHistoryBytes = 8 << 20

// eventOverhead is what one event costs beyond its key and value bytes:
// the Event struct in the history's slice (type, index, create index and
// two slice headers) plus the allocator's rounding.
const eventOverhead = 80

// EventType says what an Event records.
type EventType uint8

// Event types.
const (
	// EventPut: the key was created or changed.
	EventPut EventType = iota + 1
	// EventDelete: the key was deleted.
	EventDelete
)

// Event is one change of one key. Its slices are shared with the history
// and must not be modified.
type Event struct {
	Type EventType
	// Index is the Raft index of the entry that made the change; a PUT's
	// mod index.
	Index uint64
	Key   []byte
	// Value is a PUT's value (non-nil), nil for a DELETE.
	Value []byte
	// CreateIndex is a PUT's create index after the write, 0 for a DELETE.
	CreateIndex uint64
}

// history is the FSM's bounded record of recent changes of the key space,
// in apply order (ascending index; within an index, the order the entry's
// commands and ops made them). It covers (floor, applied]: every change at
// an index in that range is in events. It is guarded by FSM.mu, written
// only by putKey and deleteKey, and not part of the snapshot.
type history struct {
	maxBytes int64
	bytes    int64   // what events hold: their key and value bytes plus eventOverhead each
	floor    uint64  // the index the history starts after
	events   []Event // events[head:] are live
	head     int
	waiters  waiters // watches waiting for a change
}

func newHistory(maxBytes int64) *history { return &history{maxBytes: maxBytes} }

func eventBytes(e *Event) int64 { return int64(len(e.Key)+len(e.Value)) + eventOverhead }

// record appends e, then evicts whole indexes below e.Index, oldest
// first, while the history holds more than maxBytes. The index being
// applied is never evicted part way, so the history may exceed maxBytes by
// one index's events until the next change.
func (h *history) record(e Event) {
	h.events = append(h.events, e)
	h.bytes += eventBytes(&e)
	h.waiters.wake(e.Key, e.Index)
	for h.bytes > h.maxBytes && h.head < len(h.events) && h.events[h.head].Index < e.Index {
		idx := h.events[h.head].Index
		for h.head < len(h.events) && h.events[h.head].Index == idx {
			h.bytes -= eventBytes(&h.events[h.head])
			h.events[h.head] = Event{} // drop the references
			h.head++
		}
		h.floor = idx
	}
	if h.head > 1024 && h.head > len(h.events)/2 {
		n := copy(h.events, h.events[h.head:])
		clear(h.events[n:])
		h.events = h.events[:n]
		h.head = 0
	}
}

// reset empties the history; it covers (floor, floor].
func (h *history) reset(floor uint64) {
	h.events = nil
	h.head = 0
	h.bytes = 0
	h.floor = floor
	h.waiters.wakeAll() // they look again, and find the floor moved
}

// live returns the events kept, in order.
func (h *history) live() []Event { return h.events[h.head:] }

// WatchQuery selects the events of a watch.
type WatchQuery struct {
	// Start and End bound the keys: Start <= key < End; a nil bound is
	// open.
	Start, End []byte
	// After: only events with a greater index.
	After uint64
	// MaxEvents stops the answer once it holds at least this many events,
	// at the end of an index (an index's events are never split); 0: no
	// limit.
	MaxEvents int
	// MaxBytes stops the answer, at the end of an index, once its events'
	// encoded size (EventWireBytes) reaches this many bytes; 0: no limit.
	MaxBytes int
	// LimitBytes is a hard bound on that size: an answer never exceeds it.
	// It stops before an index that would take it over, and refuses an
	// index whose events alone exceed it with a *CompactedError whose
	// Oversized is that index: those events can never be delivered in one
	// answer. 0: no bound.
	LimitBytes int
	// KeysOnly leaves PUT events' values out (Value nil).
	KeysOnly bool
}

// WatchResult is what Watch found.
type WatchResult struct {
	// Events, in index order; within an index, in the order they were made.
	Events []Event
	// Resume is where the next watch continues: the applied index when the
	// answer holds every event up to it, or the last event's index when
	// MaxEvents or MaxBytes stopped it. Never below the query's After.
	Resume uint64
	// Applied is the applied index the answer reflects.
	Applied uint64
}

func (q *WatchQuery) matches(key []byte) bool {
	return (q.Start == nil || bytes.Compare(key, q.Start) >= 0) && (q.End == nil || bytes.Compare(key, q.End) < 0)
}

// Watch returns the events matching q with an index above q.After, waiting
// until there is at least one or ctx ends. When ctx ends first the result
// holds no events and Resume is the applied index (at least q.After), and
// the error is nil: an empty answer, as a blocking query gives. It fails
// with a *CompactedError when the history no longer reaches back to
// q.After, or when it was evicted past q.After between a wake-up and the
// look that followed.
//
// A watch with nothing to answer registers as a waiter and sleeps. The
// change that matches it wakes it (putKey and deleteKey check each change
// against the waiters: a map lookup for one-key watches, a range check for
// each prefix or range watch), so a write wakes only the watches it
// concerns, and a woken watch looks only at the events after the index it
// registered at (a binary search). A waiter never woken has proof that no
// matching change was applied while it waited, so its empty answer needs
// no look at the history. Watch holds FSM.mu for reading while it looks and
// registers, so no change slips between the two.
func (f *FSM) Watch(ctx context.Context, q WatchQuery) (WatchResult, error) {
	from := q.After // every matching event up to from has been answered or ruled out
	for {
		f.mu.RLock()
		res, err := f.lookup(&q, from)
		if err != nil || len(res.Events) > 0 || ctx.Err() != nil {
			f.mu.RUnlock()
			return res, err
		}
		w := f.history.waiters.add(&q, max(res.Applied, from))
		f.mu.RUnlock()
		select {
		case <-w.ch:
			from = w.from
			continue
		case <-ctx.Done():
		}
		// Time is up. Under the read lock no change is being applied:
		// unless it was woken meanwhile, no matching change was made up to
		// the applied index.
		f.mu.RLock()
		if !f.history.waiters.remove(w) {
			res, err = f.lookup(&q, w.from)
			f.mu.RUnlock()
			return res, err
		}
		res = WatchResult{Applied: f.applied.Load()}
		res.Resume = max(res.Applied, q.After)
		f.mu.RUnlock()
		return res, nil
	}
}

// waiter is a Watch waiting for a matching change.
type waiter struct {
	q    *WatchQuery
	key  string        // the key of a one-key watch; "" for a prefix or range
	from uint64        // no match up to it: the applied index when it registered, raised by wake
	ch   chan struct{} // closed when a matching change is recorded, or the history reset
}

// waiters are the watches waiting for a change. Registration happens under
// FSM.mu's read lock and wake-ups under its write lock (putKey, deleteKey,
// Restore), so mu, its own lock, only orders registrations against each
// other.
type waiters struct {
	mu     sync.Mutex
	n      atomic.Int64                    // registered waiters, to skip the lock when none
	byKey  map[string]map[*waiter]struct{} // one-key watches, by key
	ranged map[*waiter]struct{}            // prefix and range watches
}

// add registers a waiter for q that has ruled out every change up to from.
func (ws *waiters) add(q *WatchQuery, from uint64) *waiter {
	w := &waiter{q: q, from: from, ch: make(chan struct{})}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if k, ok := q.singleKey(); ok {
		w.key = string(k)
		if ws.byKey == nil {
			ws.byKey = map[string]map[*waiter]struct{}{}
		}
		m := ws.byKey[w.key]
		if m == nil {
			m = map[*waiter]struct{}{}
			ws.byKey[w.key] = m
		}
		m[w] = struct{}{}
	} else {
		if ws.ranged == nil {
			ws.ranged = map[*waiter]struct{}{}
		}
		ws.ranged[w] = struct{}{}
	}
	ws.n.Add(1)
	return w
}

// remove unregisters w and reports whether it was still waiting (not woken).
func (ws *waiters) remove(w *waiter) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.drop(w)
}

func (ws *waiters) drop(w *waiter) bool {
	if w.key != "" || w.q.isSingle() {
		m := ws.byKey[w.key]
		if _, ok := m[w]; !ok {
			return false
		}
		delete(m, w)
		if len(m) == 0 {
			delete(ws.byKey, w.key)
		}
	} else {
		if _, ok := ws.ranged[w]; !ok {
			return false
		}
		delete(ws.ranged, w)
	}
	ws.n.Add(-1)
	return true
}

// wake wakes every waiter whose keys include key, changed at idx. Nothing
// a woken waiter watches changed between its registration and idx, so it
// looks again from idx-1: the history may meanwhile have been evicted past
// the index it registered at, never past idx (record evicts only indexes
// below the one being applied).
func (ws *waiters) wake(key []byte, idx uint64) {
	if ws.n.Load() == 0 {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.byKey[string(key)] {
		ws.drop(w)
		w.from = max(w.from, idx-1)
		close(w.ch)
	}
	for w := range ws.ranged {
		if w.q.matches(key) {
			ws.drop(w)
			w.from = max(w.from, idx-1)
			close(w.ch)
		}
	}
}

// wakeAll wakes every waiter (the history was reset).
func (ws *waiters) wakeAll() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, m := range ws.byKey {
		for w := range m {
			close(w.ch)
		}
	}
	for w := range ws.ranged {
		close(w.ch)
	}
	ws.byKey, ws.ranged = nil, nil
	ws.n.Store(0)
}

// singleKey returns the key of a query that watches exactly one key
// ([k, k+"\x00")).
func (q *WatchQuery) singleKey() ([]byte, bool) {
	if q.isSingle() {
		return q.Start, true
	}
	return nil, false
}

func (q *WatchQuery) isSingle() bool {
	return q.Start != nil && len(q.End) == len(q.Start)+1 && q.End[len(q.Start)] == 0 && bytes.Equal(q.End[:len(q.Start)], q.Start)
}

// lookup collects the events of q above from. The caller holds f.mu.
func (f *FSM) lookup(q *WatchQuery, from uint64) (res WatchResult, err error) {
	h := f.history
	applied := f.applied.Load()
	res.Applied = applied
	res.Resume = max(applied, q.After)
	if from < h.floor {
		// Current is where a watch resumes after re-reading: never below
		// the floor (after a backup's restore it is above the applied index
		// until the next entry).
		return res, &CompactedError{Oldest: h.floor + 1, Current: max(applied, h.floor)}
	}
	ev := h.live()
	i := sort.Search(len(ev), func(i int) bool { return ev[i].Index > from })
	nbytes := 0
	cur, curStart := uint64(0), 0 // the index being collected, and where its events start
	for ; i < len(ev); i++ {
		e := &ev[i]
		if !q.matches(e.Key) {
			continue
		}
		if e.Index != cur {
			if n := len(res.Events); n > 0 && (q.MaxEvents > 0 && n >= q.MaxEvents || q.MaxBytes > 0 && nbytes >= q.MaxBytes) {
				res.Resume = cur
				return res, nil
			}
			cur, curStart = e.Index, len(res.Events)
		}
		out := *e
		if q.KeysOnly {
			out.Value = nil
		}
		nbytes += EventWireBytes(&out)
		res.Events = append(res.Events, out)
		if q.LimitBytes > 0 && nbytes > q.LimitBytes {
			if curStart == 0 {
				return WatchResult{Applied: applied, Resume: res.Resume},
					&CompactedError{Oldest: cur + 1, Current: max(applied, h.floor), Oversized: cur}
			}
			// Stop before the index that does not fit; the next answer
			// starts with it, alone.
			clear(res.Events[curStart:])
			res.Events = res.Events[:curStart]
			res.Resume = res.Events[curStart-1].Index
			return res, nil
		}
	}
	return res, nil
}

// HistoryRange returns the indexes the change history covers: every change
// at an index in (floor, applied] is kept.
func (f *FSM) HistoryRange() (floor, applied uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.history.floor, f.applied.Load()
}

// HistoryBytes returns what the change history holds, in bytes as it is
// bounded (keys, values and a fixed overhead per event).
func (f *FSM) HistoryBytes() int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.history.bytes
}
