package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

func watchString(e client.WatchEvent) string {
	switch e.Type {
	case client.WatchPut:
		return fmt.Sprintf("PUT %s=%s@%d", e.Key, e.Entry.Value, e.Index)
	case client.WatchDelete:
		return fmt.Sprintf("DEL %s@%d", e.Key, e.Index)
	case client.WatchResync:
		return fmt.Sprintf("RESYNC@%d(oldest %d)", e.Index, e.Oldest)
	}
	return fmt.Sprintf("%v: %v", e.Type, e.Err)
}

// receiveN takes n events from ch.
func receiveN(t *testing.T, ch <-chan client.WatchEvent, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for len(out) < n {
		e, ok := <-ch
		if !ok {
			t.Fatalf("channel closed after %v", out)
		}
		out = append(out, watchString(e))
	}
	return out
}

func mustWatch(t *testing.T, c *client.Client, ctx context.Context, key string, from int64, opts ...client.WatchOption) <-chan client.WatchEvent {
	t.Helper()
	ch, err := c.Watch(ctx, []byte(key), from, opts...)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return ch
}

func TestWatch_DeliversEveryChangeInOrder(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	if _, err := c.Put(ctx, []byte("app/a"), []byte("0")); err != nil { // 1: before the watch's start
		t.Fatal(err)
	}
	ch := mustWatch(t, c, ctx, "app/", 1, client.WithPrefix(), client.WithWatchWait(50*time.Millisecond))
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := c.Put(ctx, []byte("app/a"), []byte("1")) // 2
	mustDo(err)
	_, err = c.Put(ctx, []byte("zzz"), []byte("x")) // 3: not watched
	mustDo(err)
	_, err = c.Txn(ctx, &kv.TxnRequest{Success: []*kv.Op{ // 4
		{Type: kv.OpType_PUT, Key: []byte("app/c"), Value: []byte("2")},
		{Type: kv.OpType_DELETE, Key: []byte("app/a")},
	}})
	mustDo(err)
	_, err = c.Delete(ctx, []byte("app/c")) // 5
	mustDo(err)
	got := receiveN(t, ch, 4)
	want := "[PUT app/a=1@2 PUT app/c=2@4 DEL app/a@4 DEL app/c@5]"
	if fmt.Sprint(got) != want {
		t.Fatalf("events\n got %v\nwant %s", got, want)
	}
}

// Calls that fail (Unavailable, a dropped connection) are retried from the last index delivered:
// every event once, in order.
func TestWatch_ResumesAfterFailuresWithoutGapOrDuplicate(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	var calls atomic.Int32
	// Two calls of every three fail, with answers a node gives while it cannot serve.
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if c.Method != "watch" {
			return nil
		}
		switch calls.Add(1) % 3 {
		case 1:
			return &kv.Unavailable{Reason: "injected"}
		case 2:
			return &kv.Timeout{Reason: "injected"}
		}
		return nil
	})
	ch := mustWatch(t, c, ctx, "k", 0, client.WithWatchWait(20*time.Millisecond))
	const n = 40
	for i := 1; i <= n; i++ {
		if _, err := c.Put(ctx, []byte("k"), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got := receiveN(t, ch, n)
	for i, s := range got {
		if want := fmt.Sprintf("PUT k=%d@%d", i+1, i+1); s != want {
			t.Fatalf("event %d: %s, want %s (all: %v)", i, s, want, got)
		}
	}
	if calls.Load() < 3 {
		t.Fatalf("only %d watch calls: the failures were not exercised", calls.Load())
	}
	// Nothing extra followed: the next event is the next write's.
	if _, err := c.Put(ctx, []byte("k"), []byte("last")); err != nil {
		t.Fatal(err)
	}
	if got, want := receiveN(t, ch, 1)[0], fmt.Sprintf("PUT k=last@%d", n+1); got != want {
		t.Fatalf("after %d events: %s, want %s", n, got, want)
	}
}

func TestWatch_CompactedDeliversResync(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	for i := 1; i <= 5; i++ {
		if _, err := c.Put(ctx, []byte("k"), fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	srv.Forget(3)
	ch := mustWatch(t, c, ctx, "k", 1, client.WithWatchWait(20*time.Millisecond))
	got := receiveN(t, ch, 1)
	if got[0] != "RESYNC@5(oldest 4)" {
		t.Fatalf("first event %s, want RESYNC@5(oldest 4)", got[0])
	}
	if _, err := c.Put(ctx, []byte("k"), []byte("6")); err != nil {
		t.Fatal(err)
	}
	if got := receiveN(t, ch, 1); got[0] != "PUT k=6@6" {
		t.Fatalf("after the resync: %s", got[0])
	}
}

func TestWatch_InvalidEndsTheWatch(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		return &kv.InvalidArgument{Field: "key", Reason: "too long"}
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ch := mustWatch(t, c, testCtx(t), "k", 0)
	e := testutil.Receive(t, 5*time.Second, "failure event", ch)
	if e.Type != client.WatchFailed || !errors.Is(e.Err, client.ErrInvalidArgument) {
		t.Fatalf("event %s, want FAILED with ErrInvalidArgument", watchString(e))
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel open after FAILED")
	}

	if _, err := c.Watch(context.Background(), nil, 0); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("empty key: %v", err)
	}
	if _, err := c.Watch(context.Background(), []byte("k"), -1); !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("negative index: %v", err)
	}
}

func TestWatch_CancelClosesTheChannel(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	ch := mustWatch(t, c, ctx, "k", 0) // waits 30 s per call
	testutil.WaitFor(t, 5*time.Second, "watch call", func() bool { return countMethod(srv.Calls(), "watch") == 1 })
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("event after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel still open 5s after cancel")
	}
}

// The watch's socket outlasts its wait, even when the client's calls have a shorter timeout.
func TestWatch_SocketTimeoutAboveWait(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.Dial.RequestTimeout = 50 * time.Millisecond })
	ctx := testCtx(t)
	// The node takes 200 ms to answer: longer than the dial timeout, shorter than the wait.
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if c.Method == "watch" {
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return nil
	})
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	ch := mustWatch(t, c, ctx, "k", 0, client.WithWatchWait(400*time.Millisecond))
	if got := receiveN(t, ch, 1); got[0] != "PUT k=v@1" {
		t.Fatalf("event %s", got[0])
	}
	if n := countMethod(srv.Calls(), "watch"); n != 1 {
		t.Fatalf("%d watch calls: the first was cut short by the socket timeout", n)
	}
}

// A node whose history is gone (say it restarted from a snapshot) sends the watch on to another
// node that still holds it: no resync while one does.
func TestWatch_CompactedTriesTheOtherNodes(t *testing.T) {
	a, b := clienttest.NewServer(t, "a"), clienttest.NewServer(t, "b")
	ctx := testCtx(t)
	for _, srv := range []*clienttest.Server{a, b} {
		w := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.DisableDiscovery = true })
		for i := 1; i <= 3; i++ {
			if _, err := w.Put(ctx, []byte("k"), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.Forget(2)
	c := mustNewClient(t, []string{a.Addr, b.Addr}, func(cfg *client.Config) { cfg.DisableDiscovery = true })
	ch := mustWatch(t, c, ctx, "k", 0, client.WithWatchWait(20*time.Millisecond))
	if got := fmt.Sprint(receiveN(t, ch, 3)); got != "[PUT k=1@1 PUT k=2@2 PUT k=3@3]" {
		t.Fatalf("events %s, want all three from b", got)
	}
	// When every node has lost them, the watch says so.
	b.Forget(1)
	ch = mustWatch(t, c, ctx, "k", 0, client.WithWatchWait(20*time.Millisecond))
	if got := receiveN(t, ch, 1)[0]; got != "RESYNC@3(oldest 2)" && got != "RESYNC@3(oldest 3)" {
		t.Fatalf("first event %s, want a resync at 3", got)
	}
}
