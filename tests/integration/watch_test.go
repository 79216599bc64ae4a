package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
)

// TestWatch_LinearizableOnAnyNode writes through one node and watches on
// another from just before the write, without waiting: the watching node
// first catches up to the leader's read index, so the answer holds the
// write.
func TestWatch_LinearizableOnAnyNode(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	fs := c.followers(leader)
	wc, rc := rawConn(t, fs[0].thriftAddr), rawConn(t, fs[1].thriftAddr)
	for i := 0; i < 20; i++ {
		put, err := kvCall(t, wc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
			return k.Put(ctx, &kv.PutRequest{Key: []byte("lin"), Value: fmt.Appendf(nil, "%d", i)})
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := kvCall(t, rc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.WatchResponse, error) {
			return k.Watch(ctx, &kv.WatchRequest{Key: []byte("lin"), AfterIndex: put.Index - 1, TimeoutMs: new(int32(0))})
		})
		if err != nil {
			t.Fatalf("watch on %s: %v", fs[1].id, err)
		}
		if len(resp.Events) != 1 || resp.Events[0].Index != put.Index || string(resp.Events[0].Entry.Value) != fmt.Sprint(i) {
			t.Fatalf("watch on %s after %d: %+v, want the put at %d", fs[1].id, put.Index-1, resp.Events, put.Index)
		}
		if resp.Info.NodeID != fs[1].id || resp.ResumeIndex < put.Index {
			t.Fatalf("served by %s, resume %d", resp.Info.NodeID, resp.ResumeIndex)
		}
	}
}

// TestWatch_SurvivesNodeKills watches a prefix through the Go client while
// one writer changes it and every node in turn is killed with SIGKILL and
// restarted (so the node serving the watch dies at least once). The events
// delivered must be exactly the prefix's committed history: every
// acknowledged write, in index order, nothing twice, nothing missing.
func TestWatch_SurvivesNodeKills(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLeader(10 * time.Second)
	var endpoints []string
	for _, p := range c.procs {
		endpoints = append(endpoints, p.thriftAddr)
	}
	ctx := ctxTimeout(t, 3*time.Minute)
	wcl := mustClient(t, endpoints...)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	events, err := wcl.Watch(watchCtx, []byte("w/"), 0, client.WithPrefix(), client.WithWatchWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []client.WatchEvent
	)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for e := range events {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		}
	}()

	cl := mustClient(t, endpoints...)
	acked := map[int64]string{} // index -> key
	var last int64
	write := func(i int) {
		k := fmt.Sprintf("w/%03d", i)
		var err error
		var idx int64
		if i%5 == 4 {
			var resp *kv.DeleteResponse
			resp, err = cl.Delete(ctx, []byte(fmt.Sprintf("w/%03d", i-1)))
			if err == nil {
				idx, k = resp.Index, fmt.Sprintf("w/%03d", i-1)
			}
		} else {
			var resp *kv.PutResponse
			resp, err = cl.Put(ctx, []byte(k), []byte(fmt.Sprint(i)))
			if err == nil {
				idx = resp.Index
			}
		}
		if err != nil {
			t.Logf("write %d: %v (outcome unknown)", i, err)
			return
		}
		acked[idx] = k
		last = max(last, idx)
	}
	n := 0
	for _, p := range c.procs {
		for j := 0; j < 20; j++ {
			write(n)
			n++
		}
		p.kill()
		for j := 0; j < 20; j++ {
			write(n)
			n++
		}
		p.start()
	}
	for j := 0; j < 20; j++ {
		write(n)
		n++
	}
	// Wait until the watch has delivered the last acknowledged write.
	eventually(t, 60*time.Second, "the watch to deliver the last write", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		if len(got) > 0 && got[len(got)-1].Index >= last {
			return true, ""
		}
		return false, fmt.Sprintf("%d events, want up to index %d", len(got), last)
	})
	stopWatch()
	<-watchDone

	// The reference: a fresh linearizable watch of the whole history.
	ref := referenceHistory(t, ctx, endpoints, "w/", last)
	mu.Lock()
	defer mu.Unlock()
	// A write whose outcome was unknown may have committed after the last
	// acknowledged one: compare up to that.
	for len(got) > 0 && got[len(got)-1].Index > last {
		got = got[:len(got)-1]
	}
	for _, e := range got {
		if e.Type == client.WatchResync || e.Type == client.WatchFailed {
			t.Fatalf("unexpected %v event: %+v", e.Type, e)
		}
	}
	if len(got) != len(ref) {
		t.Fatalf("watch delivered %d events, the history has %d", len(got), len(ref))
	}
	for i := range ref {
		if a, b := eventKey(got[i]), eventKey(ref[i]); a != b {
			t.Fatalf("event %d: watch %s, history %s", i, a, b)
		}
	}
	seen := map[int64]bool{}
	for _, e := range got {
		seen[e.Index] = true
	}
	for idx, k := range acked {
		if !seen[idx] {
			t.Fatalf("acknowledged write of %s at %d missing from the watch", k, idx)
		}
	}
	t.Logf("%d events checked across %d kills, %d acknowledged writes", len(got), len(c.procs), len(acked))
}

func eventKey(e client.WatchEvent) string {
	if e.Type == client.WatchPut {
		return fmt.Sprintf("%d PUT %s=%s", e.Index, e.Key, e.Entry.Value)
	}
	return fmt.Sprintf("%d %v %s", e.Index, e.Type, e.Key)
}

// referenceHistory reads every event of prefix up to index last with a
// fresh client's linearizable watch from index 0.
func referenceHistory(t *testing.T, ctx context.Context, endpoints []string, prefix string, last int64) []client.WatchEvent {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := mustClient(t, endpoints...).Watch(rctx, []byte(prefix), 0, client.WithPrefix(), client.WithWatchWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out []client.WatchEvent
	for e := range events {
		if e.Type == client.WatchResync || e.Type == client.WatchFailed {
			t.Fatalf("reference watch: %v %+v", e.Type, e)
		}
		out = append(out, e)
		if e.Index >= last {
			// Every event of the last index has arrived once a later one
			// would: answers never split an index, and the last write was
			// a single change.
			break
		}
	}
	return out
}

// TestWatch_OutlastsServerTimeouts waits longer than the node's read,
// idle and request timeouts: they bound reading a request and a request's
// work in the node, never a watch's wait.
func TestWatch_OutlastsServerTimeouts(t *testing.T) {
	p := newProc(t, "n1", "--read-timeout", "1s", "--idle-timeout", "1s", "--request-timeout", "1s")
	p.start()
	conn := rawConn(t, p.thriftAddr)
	start := time.Now()
	resp, err := kvCall(t, conn, 30*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.WatchResponse, error) {
		return k.Watch(ctx, &kv.WatchRequest{Key: []byte("quiet"), TimeoutMs: new(int32(2500))})
	})
	if err != nil {
		t.Fatalf("a 2.5 s watch on a node with 1 s timeouts: %v", err)
	}
	if len(resp.Events) != 0 || time.Since(start) < 2500*time.Millisecond {
		t.Fatalf("answered after %v with %d events, want none after 2.5 s", time.Since(start), len(resp.Events))
	}
	// The connection is still usable.
	if _, err := kvCall(t, conn, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
		return k.Put(ctx, &kv.PutRequest{Key: []byte("quiet"), Value: []byte("v")})
	}); err != nil {
		t.Fatalf("put on the same connection: %v", err)
	}
}
