package server

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

func mustPut(t *testing.T, h *Handler, k, v string) int64 {
	t.Helper()
	r, err := h.Put(context.Background(), &kv.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return r.Index
}

func eventString(e *kv.Event) string {
	if e.Type == kv.EventType_DELETE {
		if e.Entry != nil {
			return "DELETE with an entry"
		}
		return fmt.Sprintf("DEL %s@%d", e.Key, e.Index)
	}
	return fmt.Sprintf("PUT %s=%s@%d(c%d,m%d)", e.Key, e.Entry.Value, e.Index, e.Entry.CreateIndex, e.Entry.ModIndex)
}

func eventStrings(es []*kv.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = eventString(e)
	}
	return out
}

func TestHandler_WatchForms(t *testing.T) {
	h, _ := mustHandler(t, Limits{})
	ctx := context.Background()
	mustPut(t, h, "app/a", "1")                                                          // 1
	mustPut(t, h, "app/b", "2")                                                          // 2
	mustPut(t, h, "other", "3")                                                          // 3
	mustPut(t, h, "app/a", "4")                                                          // 4
	if _, err := h.DeleteKey(ctx, &kv.DeleteRequest{Key: []byte("app/b")}); err != nil { // 5
		t.Fatal(err)
	}
	zero := i32(0)
	for _, tc := range []struct {
		name string
		req  *kv.WatchRequest
		want string
	}{
		{"key", &kv.WatchRequest{Key: []byte("app/a"), TimeoutMs: zero}, "[PUT app/a=1@1(c1,m1) PUT app/a=4@4(c1,m4)]"},
		{"prefix", &kv.WatchRequest{Prefix: []byte("app/"), TimeoutMs: zero}, "[PUT app/a=1@1(c1,m1) PUT app/b=2@2(c2,m2) PUT app/a=4@4(c1,m4) DEL app/b@5]"},
		{"every key", &kv.WatchRequest{Prefix: []byte{}, AfterIndex: 3, TimeoutMs: zero}, "[PUT app/a=4@4(c1,m4) DEL app/b@5]"},
		{"range", &kv.WatchRequest{StartKey: []byte("app/b"), EndKey: []byte("p"), TimeoutMs: zero}, "[PUT app/b=2@2(c2,m2) PUT other=3@3(c3,m3) DEL app/b@5]"},
		{"open range", &kv.WatchRequest{EndKey: []byte("app/b"), TimeoutMs: zero}, "[PUT app/a=1@1(c1,m1) PUT app/a=4@4(c1,m4)]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := h.Watch(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(eventStrings(resp.Events)); got != tc.want {
				t.Fatalf("events\n got %s\nwant %s", got, tc.want)
			}
			if resp.ResumeIndex != 5 || resp.Info.AppliedIndex != 5 || resp.Info.Consistency != kv.Consistency_LINEARIZABLE {
				t.Fatalf("resume %d info %+v", resp.ResumeIndex, resp.Info)
			}
		})
	}
	// keys_only leaves values out.
	resp, err := h.Watch(ctx, &kv.WatchRequest{Key: []byte("app/a"), TimeoutMs: zero, KeysOnly: bp(true)})
	if err != nil || len(resp.Events) != 2 || resp.Events[0].Entry.Value != nil {
		t.Fatalf("keys only: %v %v", resp, err)
	}
	// max_events pages; resume continues exactly after the last event.
	resp, err = h.Watch(ctx, &kv.WatchRequest{Prefix: []byte("app/"), TimeoutMs: zero, MaxEvents: i32(2)})
	if err != nil || len(resp.Events) != 2 || resp.ResumeIndex != 2 {
		t.Fatalf("page 1: %v %v", resp, err)
	}
	resp, err = h.Watch(ctx, &kv.WatchRequest{Prefix: []byte("app/"), TimeoutMs: zero, AfterIndex: resp.ResumeIndex})
	if err != nil || fmt.Sprint(eventStrings(resp.Events)) != "[PUT app/a=4@4(c1,m4) DEL app/b@5]" {
		t.Fatalf("page 2: %v %v", resp, err)
	}
}

func TestHandler_WatchInvalid(t *testing.T) {
	h, _ := mustHandler(t, Limits{MaxKeySize: 8})
	for _, tc := range []struct {
		req   *kv.WatchRequest
		field string
	}{
		{nil, "req"},
		{&kv.WatchRequest{}, "key"},
		{&kv.WatchRequest{Key: []byte{}}, "key"},
		{&kv.WatchRequest{Key: []byte("a"), Prefix: []byte("a")}, "key"},
		{&kv.WatchRequest{Key: []byte("a"), EndKey: []byte("b")}, "key"},
		{&kv.WatchRequest{Prefix: []byte("a"), StartKey: []byte("b")}, "prefix"},
		{&kv.WatchRequest{Key: []byte("123456789")}, "key"},
		{&kv.WatchRequest{Prefix: []byte("123456789")}, "prefix"},
		{&kv.WatchRequest{Key: []byte("a"), AfterIndex: -1}, "after_index"},
		{&kv.WatchRequest{Key: []byte("a"), TimeoutMs: i32(-1)}, "timeout_ms"},
		{&kv.WatchRequest{Key: []byte("a"), MaxEvents: i32(-1)}, "max_events"},
		{&kv.WatchRequest{Key: []byte("a"), Consistency: kv.ConsistencyPtr(7)}, "consistency"},
	} {
		_, err := h.Watch(context.Background(), tc.req)
		ia, ok := err.(*kv.InvalidArgument)
		if !ok || ia.Field != tc.field {
			t.Errorf("%+v: %v (%T), want InvalidArgument on %s", tc.req, err, err, tc.field)
		}
	}
}

func TestHandler_WatchBlocksUntilEvent(t *testing.T) {
	h, _ := mustHandler(t, Limits{})
	mustPut(t, h, "x", "0")
	type answer struct {
		resp *kv.WatchResponse
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("w"), AfterIndex: 1, TimeoutMs: i32(60000)})
		got <- answer{resp, err}
	}()
	testutil.WaitFor(t, 5*time.Second, "watch waiting", func() bool { return h.Watching() == 1 })
	mustPut(t, h, "x", "1")
	idx := mustPut(t, h, "w", "now")
	a := testutil.Receive(t, 5*time.Second, "watch answer", got)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if fmt.Sprint(eventStrings(a.resp.Events)) != fmt.Sprintf("[PUT w=now@%d(c%[1]d,m%[1]d)]", idx) || a.resp.ResumeIndex != idx {
		t.Fatalf("answer %v resume %d", eventStrings(a.resp.Events), a.resp.ResumeIndex)
	}
	if h.Watching() != 0 {
		t.Fatalf("%d watches still counted", h.Watching())
	}

	// With no event it answers at its timeout, without events, resuming at
	// the applied index.
	resp, err := h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("w"), AfterIndex: idx, TimeoutMs: i32(30)})
	if err != nil || len(resp.Events) != 0 || resp.ResumeIndex != idx {
		t.Fatalf("timed out watch: %v %v", resp, err)
	}
}

// The generic request timeout bounds the read index, not the wait.
func TestHandler_WatchOutlastsRequestTimeout(t *testing.T) {
	s := mustNewFakeStore(t)
	h := New(s, Config{RequestTimeout: 10 * time.Millisecond})
	start := time.Now()
	resp, err := h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("w"), TimeoutMs: i32(200)})
	if err != nil || len(resp.Events) != 0 {
		t.Fatalf("watch: %v %v", resp, err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Fatalf("watch answered after %v, before its 200ms timeout: the request timeout cut it", waited)
	}
}

func TestHandler_WatchLimits(t *testing.T) {
	s := mustNewFakeStore(t)
	h := New(s, Config{Watch: WatchConfig{MaxWaiting: 2, MaxTimeout: 50 * time.Millisecond}})
	// A timeout above the maximum is lowered to it.
	start := time.Now()
	resp, err := h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("w"), TimeoutMs: i32(60000)})
	if err != nil || len(resp.Events) != 0 {
		t.Fatalf("watch: %v %v", resp, err)
	}
	if waited := time.Since(start); waited > 30*time.Second {
		t.Fatalf("watch waited %v with a 50ms maximum", waited)
	}
	// Two wait; the third is refused at once.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	h2 := New(s, Config{Watch: WatchConfig{MaxWaiting: 2}})
	for i := 0; i < 2; i++ {
		go func() {
			_, err := h2.Watch(ctx, &kv.WatchRequest{Key: []byte("w"), TimeoutMs: i32(60000)})
			done <- err
		}()
	}
	testutil.WaitFor(t, 5*time.Second, "two watches waiting", func() bool { return h2.Watching() == 2 })
	_, err = h2.Watch(context.Background(), &kv.WatchRequest{Key: []byte("w"), TimeoutMs: i32(0)})
	un, ok := err.(*kv.Unavailable)
	if !ok || un.Reason != "too many watches waiting: 2 on this node (--max-watches); try another node or later" {
		t.Fatalf("third watch: %v (%T)", err, err)
	}
	cancel()
	for i := 0; i < 2; i++ {
		if err := testutil.Receive(t, 5*time.Second, "watch end", done); err != nil {
			t.Fatalf("cancelled watch: %v", err)
		}
	}
	if h2.Watching() != 0 {
		t.Fatalf("%d watches counted after they ended", h2.Watching())
	}
}

func TestHandler_WatchCompacted(t *testing.T) {
	h, s := mustHandler(t, Limits{})
	mustPut(t, h, "a", "1")
	// Restore a snapshot at the index already applied: the history starts
	// past it (a restore that does not move forward is a jump).
	snap, err := s.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var buf bufSink
	if err := snap.Persist(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.f.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	_, err = h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("a"), TimeoutMs: i32(0)})
	c, ok := err.(*kv.Compacted)
	if !ok || c.OldestIndex != 3 || c.CurrentIndex != 2 {
		t.Fatalf("watch from 0 after restore: %v (%T), want Compacted{3, 2}", err, err)
	}
	if Outcome(err) != "compacted" {
		t.Fatalf("outcome %q", Outcome(err))
	}
	// Resuming where Compacted says works.
	resp, err := h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("a"), AfterIndex: c.CurrentIndex, TimeoutMs: i32(0)})
	if err != nil || len(resp.Events) != 0 || resp.ResumeIndex != 2 {
		t.Fatalf("watch from Compacted's current index: %v %v", resp, err)
	}
}

func TestHandler_WatchPanicRecovered(t *testing.T) {
	h, s := mustHandler(t, Limits{})
	s.panicOn = "watch"
	if _, err := h.Watch(context.Background(), &kv.WatchRequest{Key: []byte("a")}); err == nil || Outcome(err) != "internal_error" {
		t.Fatalf("panic: %v", err)
	}
	if h.Watching() != 0 {
		t.Fatal("a panicking watch stays counted")
	}
}

// bufSink is an in-memory raft.SnapshotSink, read back as the restore's
// input.
type bufSink struct{ bytes.Buffer }

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { return nil }
func (s *bufSink) Close() error  { return nil }
