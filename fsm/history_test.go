package fsm

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// ev is an event as the tests compare it.
type ev struct {
	typ    EventType
	idx    uint64
	key    string
	value  string
	create uint64
}

func (e ev) String() string {
	if e.typ == EventDelete {
		return fmt.Sprintf("DEL %s@%d", e.key, e.idx)
	}
	return fmt.Sprintf("PUT %s=%q@%d(c%d)", e.key, e.value, e.idx, e.create)
}

func evs(in []Event) []ev {
	out := make([]ev, len(in))
	for i, e := range in {
		out[i] = ev{typ: e.Type, idx: e.Index, key: string(e.Key), value: string(e.Value), create: e.CreateIndex}
	}
	return out
}

func wantEvents(t *testing.T, got []Event, want ...ev) {
	t.Helper()
	g := evs(got)
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("events\n got %v\nwant %v", g, want)
	}
}

// watchNow runs a watch that does not wait.
func watchNow(t *testing.T, f *FSM, q WatchQuery) (WatchResult, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return f.Watch(ctx, q)
}

func mustWatchNow(t *testing.T, f *FSM, q WatchQuery) WatchResult {
	t.Helper()
	res, err := watchNow(t, f, q)
	if err != nil {
		t.Fatalf("Watch(%+v): %v", q, err)
	}
	return res
}

func put(k, v string, idx, create uint64) ev {
	return ev{typ: EventPut, idx: idx, key: k, value: v, create: create}
}

func del(k string, idx uint64) ev { return ev{typ: EventDelete, idx: idx, key: k} }

func txnCmd(ops ...*kv.Op) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_TXN, Compares: []*kv.Compare{}, Success: ops, Failure: []*kv.Op{}}
}

func opPut(k, v string) *kv.Op {
	return &kv.Op{Type: kv.OpType_PUT, Key: []byte(k), Value: []byte(v)}
}

func opDel(k string) *kv.Op { return &kv.Op{Type: kv.OpType_DELETE, Key: []byte(k)} }

func TestHistory_EventsInOrder(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			mustWrite(t, f, 1, putCmd("a/1", "one"))
			mustWrite(t, f, 2, putCmd("b", "x"))
			mustWrite(t, f, 3, putCmd("a/1", "two"))
			mustWrite(t, f, 4, delCmd("a/1"))
			mustWrite(t, f, 5, delCmd("a/never")) // deletes nothing: no event
			mustWrite(t, f, 6, &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("a/2"), Value: []byte("c"), ExpectedModIndex: i64(0)})
			mustWrite(t, f, 7, &kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("a/2"), Value: []byte("no"), ExpectedModIndex: i64(1)}) // fails: no event
			mustWrite(t, f, 8, &kv.Command{Op: kv.CommandOp_CAS_DELETE, Key: []byte("a/2"), ExpectedValue: []byte("c")})
			mustWrite(t, f, 9, memberSetCmd(Member{ID: "n1", ThriftAddr: "x"})) // not the key space

			all := mustWatchNow(t, f, WatchQuery{})
			wantEvents(t, all.Events,
				put("a/1", "one", 1, 1), put("b", "x", 2, 2), put("a/1", "two", 3, 1), del("a/1", 4),
				put("a/2", "c", 6, 6), del("a/2", 8))
			if all.Resume != 9 || all.Applied != 9 {
				t.Fatalf("resume %d applied %d, want 9 9", all.Resume, all.Applied)
			}
			pre := mustWatchNow(t, f, WatchQuery{Start: []byte("a/"), End: []byte("a0"), After: 3})
			wantEvents(t, pre.Events, del("a/1", 4), put("a/2", "c", 6, 6), del("a/2", 8))
			one := mustWatchNow(t, f, WatchQuery{Start: []byte("b"), End: []byte("b\x00")})
			wantEvents(t, one.Events, put("b", "x", 2, 2))
			keys := mustWatchNow(t, f, WatchQuery{After: 5, KeysOnly: true})
			if len(keys.Events) != 2 || keys.Events[0].Value != nil || string(keys.Events[0].Key) != "a/2" {
				t.Fatalf("keys only: %v", evs(keys.Events))
			}
			// Caught up: nothing, and resume at the applied index.
			none := mustWatchNow(t, f, WatchQuery{After: 9})
			if len(none.Events) != 0 || none.Resume != 9 {
				t.Fatalf("caught up: %v resume %d", evs(none.Events), none.Resume)
			}
			// An after index beyond the applied one is never moved back.
			ahead := mustWatchNow(t, f, WatchQuery{After: 20})
			if len(ahead.Events) != 0 || ahead.Resume != 20 || ahead.Applied != 9 {
				t.Fatalf("ahead: %+v", ahead)
			}
		})
	}
}

func TestHistory_TxnAndBatchShareIndexInOrder(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			mustWrite(t, f, 1, putCmd("k2", "old"))
			mustWrite(t, f, 2, txnCmd(opPut("k3", "a"), opDel("k2"), opDel("missing"), opPut("k1", "b"), opPut("k3", "c"),
				&kv.Op{Type: kv.OpType_GET, Key: []byte("k1")}))
			data, err := EncodeBatch([]*kv.Command{putCmd("z", "1"), putCmd("y", "2"), delCmd("k1")})
			if err != nil {
				t.Fatal(err)
			}
			f.Apply(&raft.Log{Index: 3, Term: 1, Type: raft.LogCommand, Data: data})
			mustWrite(t, f, 4, putCmd("k9", "after"))

			res := mustWatchNow(t, f, WatchQuery{After: 1})
			wantEvents(t, res.Events,
				put("k3", "a", 2, 2), del("k2", 2), put("k1", "b", 2, 2), put("k3", "c", 2, 2),
				put("z", "1", 3, 3), put("y", "2", 3, 3), del("k1", 3),
				put("k9", "after", 4, 4))

			// max_events stops at the end of an index, never inside one.
			for _, tc := range []struct {
				max    int
				want   int
				resume uint64
			}{{1, 4, 2}, {4, 4, 2}, {5, 7, 3}, {8, 8, 4}, {100, 8, 4}} {
				r := mustWatchNow(t, f, WatchQuery{After: 1, MaxEvents: tc.max})
				if len(r.Events) != tc.want || r.Resume != tc.resume {
					t.Fatalf("max %d: %d events resume %d, want %d resume %d", tc.max, len(r.Events), r.Resume, tc.want, tc.resume)
				}
			}
			// And so does the byte budget.
			r := mustWatchNow(t, f, WatchQuery{After: 1, MaxBytes: 3})
			if len(r.Events) != 4 || r.Resume != 2 {
				t.Fatalf("max bytes: %d events resume %d", len(r.Events), r.Resume)
			}
			// Following resume indexes page through everything exactly once.
			var got []Event
			after := uint64(0)
			for i := 0; i < 10; i++ {
				r := mustWatchNow(t, f, WatchQuery{After: after, MaxEvents: 1})
				got = append(got, r.Events...)
				if r.Resume == after {
					break
				}
				after = r.Resume
			}
			wantEvents(t, got, append([]ev{put("k2", "old", 1, 1)}, evs(res.Events)...)...)
		})
	}
}

func TestHistory_EvictionIsExact(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			// Room for about three events of 1-byte keys and 10-byte values.
			limit := int64(3*(eventOverhead+11) + 5)
			f := mustNew(t, eng, func(c *Config) { c.HistoryBytes = limit })
			for i := uint64(1); i <= 10; i++ {
				mustWrite(t, f, i, putCmd("k", fmt.Sprintf("value-%04d", i)))
			}
			if b := f.HistoryBytes(); b > limit {
				t.Fatalf("history holds %d bytes, limit %d", b, limit)
			}
			floor, applied := f.HistoryRange()
			if floor != 7 || applied != 10 {
				t.Fatalf("range (%d, %d], want (7, 10]", floor, applied)
			}
			// after = floor is the oldest served; it gets every later event.
			res := mustWatchNow(t, f, WatchQuery{After: floor})
			wantEvents(t, res.Events, put("k", "value-0008", 8, 1), put("k", "value-0009", 9, 1), put("k", "value-0010", 10, 1))
			// after = floor-1 would need the evicted event at floor.
			_, err := watchNow(t, f, WatchQuery{After: floor - 1})
			var ce *CompactedError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCompacted) || ce.Oldest != floor+1 || ce.Current != 10 {
				t.Fatalf("after %d: %v, want Compacted{oldest %d, current 10}", floor-1, err, floor+1)
			}
			// A transaction larger than the limit is kept whole until the next
			// change, then evicted whole.
			mustWrite(t, f, 11, txnCmd(opPut("t1", "0123456789"), opPut("t2", "0123456789"), opPut("t3", "0123456789"), opPut("t4", "0123456789")))
			res = mustWatchNow(t, f, WatchQuery{After: 10})
			if len(res.Events) != 4 {
				t.Fatalf("big txn: %v", evs(res.Events))
			}
			mustWrite(t, f, 12, putCmd("k", "x"))
			if floor, _ := f.HistoryRange(); floor != 11 {
				t.Fatalf("floor %d after the next change, want 11", floor)
			}
			if _, err := watchNow(t, f, WatchQuery{After: 10}); !errors.Is(err, ErrCompacted) {
				t.Fatalf("after 10: %v, want Compacted", err)
			}
		})
	}
}

func TestHistory_RestoreStartsAtSnapshot(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			src := mustNew(t, eng)
			for i := uint64(1); i <= 5; i++ {
				mustWrite(t, src, i, putCmd(fmt.Sprintf("k%d", i), "v"))
			}
			snap := mustPersist(t, src)

			dst := mustNew(t, eng)
			mustWrite(t, dst, 1, putCmd("stale", "x"))
			mustRestore(t, dst, snap)
			if floor, applied := dst.HistoryRange(); floor != 5 || applied != 5 {
				t.Fatalf("after restore: (%d, %d], want (5, 5]", floor, applied)
			}
			if dst.HistoryBytes() != 0 {
				t.Fatalf("history holds %d bytes after restore", dst.HistoryBytes())
			}
			for _, after := range []uint64{0, 4} {
				if _, err := watchNow(t, dst, WatchQuery{After: after}); !errors.Is(err, ErrCompacted) {
					t.Fatalf("after %d on a restored node: %v, want Compacted", after, err)
				}
			}
			mustWrite(t, dst, 6, putCmd("k6", "v"))
			res := mustWatchNow(t, dst, WatchQuery{After: 5})
			wantEvents(t, res.Events, put("k6", "v", 6, 6))
			// The source, which applied everything, still serves from 0.
			if res := mustWatchNow(t, src, WatchQuery{}); len(res.Events) != 5 {
				t.Fatalf("source: %d events", len(res.Events))
			}
		})
	}
}

// The events' bytes are the history's own: the arena engine reuses the
// slots of overwritten and deleted records, and the events stay intact.
func TestHistory_EventsOutliveEngineReuse(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			f := mustNew(t, eng)
			idx := uint64(0)
			for round := 0; round < 50; round++ {
				for k := 0; k < 20; k++ {
					idx++
					mustWrite(t, f, idx, putCmd(fmt.Sprintf("key-%02d", k), fmt.Sprintf("value-%d-%d", round, k)))
				}
				for k := 0; k < 20; k += 2 {
					idx++
					mustWrite(t, f, idx, delCmd(fmt.Sprintf("key-%02d", k)))
				}
			}
			res := mustWatchNow(t, f, WatchQuery{})
			if len(res.Events) != int(idx) {
				t.Fatalf("%d events, want %d", len(res.Events), idx)
			}
			i := 0
			for round := 0; round < 50; round++ {
				for k := 0; k < 20; k++ {
					e := res.Events[i]
					i++
					if e.Type != EventPut || string(e.Key) != fmt.Sprintf("key-%02d", k) || string(e.Value) != fmt.Sprintf("value-%d-%d", round, k) {
						t.Fatalf("event %d: %v", i-1, evs([]Event{e}))
					}
				}
				for k := 0; k < 20; k += 2 {
					e := res.Events[i]
					i++
					if e.Type != EventDelete || string(e.Key) != fmt.Sprintf("key-%02d", k) {
						t.Fatalf("event %d: %v", i-1, evs([]Event{e}))
					}
				}
			}
		})
	}
}

func TestHistory_WatchBlocksUntilAMatchingEvent(t *testing.T) {
	f := mustNew(t, "btree")
	mustWrite(t, f, 1, putCmd("other", "x"))
	type answer struct {
		res WatchResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := f.Watch(context.Background(), WatchQuery{Start: []byte("w"), End: []byte("w\x00")})
		got <- answer{res, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return f.history.waiters.n.Load() == 1 })
	// Changes of other keys do not end the watch.
	for i := uint64(2); i <= 20; i++ {
		mustWrite(t, f, i, putCmd("other", fmt.Sprint(i)))
	}
	select {
	case a := <-got:
		t.Fatalf("watch answered before its key changed: %+v %v", a.res, a.err)
	default:
	}
	if n := f.history.waiters.n.Load(); n != 1 {
		t.Fatalf("%d waiters after changes of other keys, want the watch still waiting", n)
	}
	mustWrite(t, f, 21, putCmd("w", "now"))
	a := testutil.Receive(t, 5*time.Second, "watch answer", got)
	if a.err != nil {
		t.Fatal(a.err)
	}
	wantEvents(t, a.res.Events, put("w", "now", 21, 21))
	if a.res.Resume != 21 {
		t.Fatalf("resume %d", a.res.Resume)
	}

	// A deadline ends it with no events and the applied index.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	res, err := f.Watch(ctx, WatchQuery{After: 21, Start: []byte("w"), End: []byte("w\x00")})
	if err != nil || len(res.Events) != 0 || res.Resume != 21 {
		t.Fatalf("timed out watch: %+v %v", res, err)
	}
}

// An answer never exceeds LimitBytes: it stops before an index that
// would take it over, and an index too large for any answer is Compacted
// (Oversized), so a watcher re-reads instead of retrying forever.
func TestHistory_LimitBytesNeverExceeded(t *testing.T) {
	f := mustNew(t, "btree")
	mustWrite(t, f, 1, putCmd("a", "1"))
	mustWrite(t, f, 2, txnCmd(opPut("b", strings.Repeat("x", 300)), opPut("c", strings.Repeat("y", 300))))
	mustWrite(t, f, 3, putCmd("d", "4"))
	small := EventWireBytes(&Event{Type: EventPut, Key: []byte("a"), Value: []byte("1")})
	big := 2 * EventWireBytes(&Event{Type: EventPut, Key: []byte("b"), Value: make([]byte, 300)})

	// Room for index 1, not for 1 and 2: the answer stops after 1.
	r := mustWatchNow(t, f, WatchQuery{LimitBytes: small + big - 1})
	wantEvents(t, r.Events, put("a", "1", 1, 1))
	if r.Resume != 1 {
		t.Fatalf("resume %d, want 1", r.Resume)
	}
	// From there index 2 alone fits, with room to spare, and 3 follows.
	r = mustWatchNow(t, f, WatchQuery{After: 1, LimitBytes: big + small})
	if len(r.Events) != 3 || r.Resume != 3 {
		t.Fatalf("after 1: %d events resume %d, want 3 events resume 3", len(r.Events), r.Resume)
	}
	// Index 2 alone is too large: Compacted, naming it, resuming at the
	// applied index.
	_, err := watchNow(t, f, WatchQuery{After: 1, LimitBytes: big - 1})
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.Oversized != 2 || ce.Oldest != 3 || ce.Current != 3 {
		t.Fatalf("oversized index: %v, want Compacted{oversized 2, oldest 3, current 3}", err)
	}
	// A PUT counts its key twice: the event's and the entry's.
	if got := EventWireBytes(&Event{Type: EventPut, Key: make([]byte, 100), Value: make([]byte, 10)}); got < 210 {
		t.Fatalf("a PUT of a 100-byte key and 10-byte value counts %d bytes", got)
	}
}

// A watch waiting while the history is evicted past where it registered
// loses nothing it watches: the change that wakes it is still kept, and it
// looks again from there, not from where it registered.
func TestHistory_EvictedWhileWaitingKeepsTheWakingChange(t *testing.T) {
	f := mustNew(t, "btree", func(c *Config) { c.HistoryBytes = eventOverhead + 11 })
	mustWrite(t, f, 1, putCmd("a", "x"))
	type answer struct {
		res WatchResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := f.Watch(context.Background(), WatchQuery{After: 1, Start: []byte("w"), End: []byte("w\x00")})
		got <- answer{res, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return f.history.waiters.n.Load() == 1 })
	// Changes of other keys evict index 2 and 3 before w changes at 4:
	// the history keeps one change, w's.
	for i, k := range []string{"b", "c", "w"} {
		mustWrite(t, f, uint64(i+2), putCmd(k, "0123456789"))
	}
	a := testutil.Receive(t, 5*time.Second, "watch answer", got)
	if a.err != nil {
		t.Fatalf("watch: %v, want the change at 4", a.err)
	}
	wantEvents(t, a.res.Events, put("w", "0123456789", 4, 4))
}

// A watch whose own change is evicted before it looks again gets Compacted
// instead of silently skipping it.
func TestHistory_EvictedWhileWaiting(t *testing.T) {
	f := mustNew(t, "btree", func(c *Config) { c.HistoryBytes = eventOverhead + 11 })
	mustWrite(t, f, 1, putCmd("a", "x"))
	got := make(chan error, 1)
	go func() {
		_, err := f.Watch(context.Background(), WatchQuery{After: 1, Start: []byte("w"), End: []byte("w\x00")})
		got <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return f.history.waiters.n.Load() == 1 })
	// Two entries applied before it looks again (Apply holds the write
	// lock, so the woken watch cannot look between them): the first, w's,
	// wakes it, and the second evicts it.
	f.mu.Lock()
	for i, k := range []string{"w", "b"} {
		if r := f.applyCommand(uint64(i+2), putCmd(k, "0123456789")); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	f.applied.Store(3)
	f.mu.Unlock()
	err := testutil.Receive(t, 5*time.Second, "watch answer", got)
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.Oldest != 3 || ce.Current != 3 {
		t.Fatalf("watch: %v, want Compacted{oldest 3, current 3}", err)
	}
}

// A watch never woken knows no matching change was made while it waited,
// even when the history moved past where it started: it answers empty.
func TestHistory_UnwokenWatchNeedsNoHistory(t *testing.T) {
	f := mustNew(t, "btree", func(c *Config) { c.HistoryBytes = eventOverhead + 11 })
	mustWrite(t, f, 1, putCmd("a", "x"))
	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		res WatchResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := f.Watch(ctx, WatchQuery{After: 1, Start: []byte("w"), End: []byte("w\x00")})
		got <- answer{res, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return f.history.waiters.n.Load() == 1 })
	for i := uint64(2); i <= 10; i++ {
		mustWrite(t, f, i, putCmd("b", "0123456789"))
	}
	if floor, _ := f.HistoryRange(); floor != 9 {
		t.Fatalf("floor %d, want 9", floor)
	}
	cancel()
	a := testutil.Receive(t, 5*time.Second, "watch answer", got)
	if a.err != nil || len(a.res.Events) != 0 || a.res.Resume != 10 {
		t.Fatalf("unwoken watch: %+v %v, want no events, resume 10", a.res, a.err)
	}
	if n := f.history.waiters.n.Load(); n != 0 {
		t.Fatalf("%d waiters left registered", n)
	}
	// A restore wakes waiters: their history is gone.
	go func() {
		_, err := f.Watch(context.Background(), WatchQuery{After: 10, Start: []byte("w"), End: []byte("w\x00")})
		got <- answer{err: err}
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return f.history.waiters.n.Load() == 1 })
	src := mustNew(t, "btree")
	for i := uint64(1); i <= 20; i++ {
		mustWrite(t, src, i, putCmd("z", "v"))
	}
	mustRestore(t, f, mustPersist(t, src))
	if a := testutil.Receive(t, 5*time.Second, "watch answer", got); !errors.Is(a.err, ErrCompacted) {
		t.Fatalf("watch across a restore: %v, want Compacted", a.err)
	}
}

// Waiters on one key, a prefix and a range are woken only by their changes.
func TestHistory_WakesOnlyMatchingWatches(t *testing.T) {
	f := mustNew(t, "btree")
	mustWrite(t, f, 1, putCmd("x", "0"))
	queries := map[string]WatchQuery{
		"key":    {After: 1, Start: []byte("k"), End: []byte("k\x00")},
		"prefix": {After: 1, Start: []byte("p/"), End: []byte("p0")},
		"range":  {After: 1, Start: []byte("m"), End: []byte("o")},
	}
	got := make(chan string, len(queries))
	for name, q := range queries {
		go func() {
			res, err := f.Watch(context.Background(), q)
			if err != nil || len(res.Events) == 0 {
				got <- fmt.Sprintf("%s: %v %v", name, res, err)
				return
			}
			got <- name + " " + string(res.Events[0].Key)
		}()
	}
	testutil.WaitFor(t, 5*time.Second, "three watches waiting", func() bool { return f.history.waiters.n.Load() == 3 })
	mustWrite(t, f, 2, putCmd("k2", "no")) // beside the key
	mustWrite(t, f, 3, putCmd("p0", "no")) // beside the prefix
	mustWrite(t, f, 4, putCmd("o", "no"))  // the range's end
	mustWrite(t, f, 5, putCmd("kk", "no")) // not the key
	if n := f.history.waiters.n.Load(); n != 3 {
		t.Fatalf("%d waiting after unrelated changes, want 3", n)
	}
	mustWrite(t, f, 6, putCmd("n", "1"))
	if a := testutil.Receive(t, 5*time.Second, "range watch", got); a != "range n" {
		t.Fatalf("woken: %s", a)
	}
	mustWrite(t, f, 7, putCmd("p/x", "1"))
	if a := testutil.Receive(t, 5*time.Second, "prefix watch", got); a != "prefix p/x" {
		t.Fatalf("woken: %s", a)
	}
	mustWrite(t, f, 8, delCmd("x"))
	mustWrite(t, f, 9, putCmd("k", "1"))
	if a := testutil.Receive(t, 5*time.Second, "key watch", got); a != "key k" {
		t.Fatalf("woken: %s", a)
	}
}

func TestConfig_HistoryBytes(t *testing.T) {
	if _, err := New(&Config{HistoryBytes: -1}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("negative history bytes: %v", err)
	}
	f := mustNew(t, "btree")
	if f.history.maxBytes != DefaultHistoryBytes {
		t.Fatalf("default history bytes %d", f.history.maxBytes)
	}
}

// A backup restored into a running node moves its state back: the changes
// the restore undid have no events, so a watch from before the restore,
// waiting or new, gets Compacted, and resumes past it, not from the
// backup's older index.
func TestHistory_RestoreBackwardsCompactsEveryEarlierWatch(t *testing.T) {
	f := mustNew(t, "btree")
	for i := uint64(1); i <= 10; i++ {
		mustWrite(t, f, i, putCmd(fmt.Sprintf("k%d", i%3), fmt.Sprint(i)))
	}
	backup := mustPersist(t, mustNewAt(t, 5))
	got := make(chan error, 1)
	go func() {
		_, err := f.Watch(context.Background(), WatchQuery{After: 10})
		got <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return f.history.waiters.n.Load() == 1 })
	mustRestore(t, f, backup)
	err := testutil.Receive(t, 5*time.Second, "waiting watch's answer", got)
	var ce *CompactedError
	if !errors.As(err, &ce) || ce.Oldest != 12 || ce.Current != 11 {
		t.Fatalf("waiting watch after a backwards restore: %v, want Compacted{oldest 12, current 11}", err)
	}
	for _, after := range []uint64{5, 7, 10} {
		if _, err := watchNow(t, f, WatchQuery{After: after}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("new watch after %d: %v, want Compacted", after, err)
		}
	}
	// The next entry (raft gives the restore an index of its own, 11)
	// is seen by a watch resuming from Compacted's current index.
	mustWrite(t, f, 12, putCmd("k0", "new"))
	res := mustWatchNow(t, f, WatchQuery{After: ce.Current})
	wantEvents(t, res.Events, put("k0", "new", 12, 12))
}

// mustNewAt returns an FSM that applied n puts.
func mustNewAt(t *testing.T, n uint64) *FSM {
	t.Helper()
	f := mustNew(t, "btree")
	for i := uint64(1); i <= n; i++ {
		mustWrite(t, f, i, putCmd(fmt.Sprintf("b%d", i), "v"))
	}
	return f
}

// A DELETE event keeps its key only: the deleted value, which an engine
// may keep in the same allocation as the key, is freed while the history
// still holds the delete.
func TestHistory_DeleteEventsDoNotPinValues(t *testing.T) {
	for _, eng := range engines {
		t.Run(eng, func(t *testing.T) {
			const n, size = 64, 256 << 10
			big := string(make([]byte, size))
			idx := uint64(0)
			// Restored, so the puts' events (and their values) are not in
			// the history: only the deletes below are.
			f := mustNew(t, eng)
			func() {
				src := mustNew(t, eng)
				for i := 0; i < n; i++ {
					idx++
					mustWrite(t, src, idx, putCmd(fmt.Sprintf("k%02d", i), big))
				}
				mustRestore(t, f, mustPersist(t, src))
			}()
			for i := 0; i < n; i++ {
				idx++
				mustWrite(t, f, idx, delCmd(fmt.Sprintf("k%02d", i)))
			}
			if res := mustWatchNow(t, f, WatchQuery{After: uint64(n)}); len(res.Events) != n {
				t.Fatalf("history holds %d deletes, want %d", len(res.Events), n)
			}
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			if held := ms.HeapAlloc; held > n*size/4 {
				t.Fatalf("%d MiB of heap held after deleting %d MiB of values", held>>20, n*size>>20)
			}
			runtime.KeepAlive(f)
		})
	}
}
