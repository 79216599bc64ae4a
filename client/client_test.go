package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// mustNewClient returns a client for endpoints with fast retries, closed when the test ends.
func mustNewClient(t *testing.T, endpoints []string, mutate func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		Endpoints:  endpoints,
		Backoff:    time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		Logger:     testutil.Logger(t, slog.LevelDebug),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// writeIDs returns the request ids of the recorded calls of method.
func writeIDs(calls []clienttest.Call, method string) []kv.RequestID {
	var ids []kv.RequestID
	for _, c := range calls {
		if c.Method == method && c.RequestID != nil {
			ids = append(ids, *c.RequestID)
		}
	}
	return ids
}

func countMethod(calls []clienttest.Call, method string) int {
	n := 0
	for _, c := range calls {
		if c.Method == method {
			n++
		}
	}
	return n
}

func TestNew_Validates(t *testing.T) {
	tests := []struct {
		name string
		cfg  client.Config
	}{
		{"no endpoints", client.Config{}},
		{"empty endpoint", client.Config{Endpoints: []string{""}}},
		{"bad consistency", client.Config{Endpoints: []string{"127.0.0.1:1"}, Consistency: 7}},
		{"negative backoff", client.Config{Endpoints: []string{"127.0.0.1:1"}, Backoff: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.New(tt.cfg)
			if !errors.Is(err, client.ErrInvalidArgument) {
				t.Fatalf("New: got %v, want ErrInvalidArgument", err)
			}
		})
	}
}

func TestClient_BasicOps(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)

	put, err := c.Put(ctx, []byte("a"), []byte("1"))
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if put.Index <= 0 || put.CreateIndex != put.Index {
		t.Fatalf("put response %+v: want positive index equal to create index", put)
	}
	put2, err := c.Put(ctx, []byte("a"), []byte("2"), client.WithPrevious())
	if err != nil {
		t.Fatalf("second put: %v", err)
	}
	if put2.Previous == nil || string(put2.Previous.Value) != "1" || put2.CreateIndex != put.Index {
		t.Fatalf("second put response %+v: want previous value 1 and create index %d", put2, put.Index)
	}

	got, err := c.Get(ctx, []byte("a"))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !got.Found || string(got.Entry.Value) != "2" || got.Entry.ModIndex != put2.Index {
		t.Fatalf("get: %+v, want value 2 at mod index %d", got, put2.Index)
	}
	if got.Info.Consistency != kv.Consistency_LINEARIZABLE {
		t.Fatalf("get consistency %v, want LINEARIZABLE by default", got.Info.Consistency)
	}
	missing, err := c.Get(ctx, []byte("nope"))
	if err != nil {
		t.Fatalf("get missing: %v", err)
	}
	if missing.Found {
		t.Fatalf("get missing: found %+v", missing.Entry)
	}

	cas, err := c.CAS(ctx, &kv.CASRequest{Key: []byte("a"), ExpectedValue: []byte("wrong"), Value: []byte("3")})
	if err != nil {
		t.Fatalf("failing cas: %v", err)
	}
	if cas.Succeeded || string(cas.Current.Value) != "2" {
		t.Fatalf("failing cas: %+v, want not succeeded with current value 2", cas)
	}
	cas, err = c.CAS(ctx, &kv.CASRequest{Key: []byte("a"), ExpectedModIndex: &put2.Index, Value: []byte("3")})
	if err != nil {
		t.Fatalf("cas: %v", err)
	}
	if !cas.Succeeded || string(cas.Current.Value) != "3" {
		t.Fatalf("cas: %+v, want succeeded with value 3", cas)
	}

	for _, k := range []string{"b", "c", "d"} {
		if _, err := c.Put(ctx, []byte(k), []byte("v"+k)); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
	}
	scan, err := c.Scan(ctx, &kv.ScanRequest{StartKey: []byte("b"), EndKey: []byte("d")})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(scan.Entries) != 2 || string(scan.Entries[0].Key) != "b" || string(scan.Entries[1].Key) != "c" {
		t.Fatalf("scan [b, d): %d entries %+v, want b and c", len(scan.Entries), scan.Entries)
	}

	txn, err := c.Txn(ctx, &kv.TxnRequest{
		Compares: []*kv.Compare{{Key: []byte("b"), Target: kv.CompareTarget_VALUE, Value: []byte("vb")}},
		Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("e"), Value: []byte("ve")}, {Type: kv.OpType_DELETE, Key: []byte("b")}},
	})
	if err != nil {
		t.Fatalf("txn: %v", err)
	}
	if !txn.Succeeded || len(txn.Results) != 2 {
		t.Fatalf("txn: %+v, want succeeded with 2 results", txn)
	}
	if _, ok := srv.Value("b"); ok {
		t.Fatal("txn: b still exists")
	}

	del, err := c.Delete(ctx, []byte("e"))
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if !del.Deleted {
		t.Fatal("delete e: not deleted")
	}
	del, err = c.Delete(ctx, []byte("e"))
	if err != nil {
		t.Fatalf("delete again: %v", err)
	}
	if del.Deleted {
		t.Fatal("delete of a missing key reported deleted")
	}

	st, err := c.Status(ctx, srv.Addr)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.NodeID != "n1" || st.Keys != 3 {
		t.Fatalf("status: %+v, want node n1 with 3 keys", st)
	}

	// Every write carried a request id, and a single caller reuses one session: one client id, with
	// sequences 1, 2, 3, ...
	var writes []kv.RequestID
	for _, m := range []string{"put", "cas", "txn", "delete_key"} {
		writes = append(writes, writeIDs(srv.Calls(), m)...)
	}
	if len(writes) != 10 {
		t.Fatalf("got %d writes with request ids, want 10", len(writes))
	}
	seen := make(map[int64]bool)
	for _, id := range writes {
		if id.ClientID <= 0 {
			t.Fatalf("client id %d: want positive 63-bit", id.ClientID)
		}
		seen[id.ClientID] = true
	}
	if len(seen) != 1 {
		t.Fatalf("sequential writes used %d client ids, want 1", len(seen))
	}
}

func TestClient_ReadConsistency(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.Consistency = kv.Consistency_STALE })
	ctx := testCtx(t)

	got, err := c.Get(ctx, []byte("k"))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Info.Consistency != kv.Consistency_STALE {
		t.Fatalf("get consistency %v, want the configured STALE", got.Info.Consistency)
	}
	got, err = c.Get(ctx, []byte("k"), client.WithConsistency(kv.Consistency_LINEARIZABLE))
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Info.Consistency != kv.Consistency_LINEARIZABLE {
		t.Fatalf("get consistency %v, want the option's LINEARIZABLE", got.Info.Consistency)
	}
	req := &kv.ScanRequest{}
	scan, err := c.Scan(ctx, req)
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if scan.Info.Consistency != kv.Consistency_STALE {
		t.Fatalf("scan consistency %v, want STALE", scan.Info.Consistency)
	}
	if req.Consistency != nil {
		t.Fatal("scan modified the caller's request")
	}
}

func TestClient_InvalidArgumentNotRetried(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	var calls atomic.Int32
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		calls.Add(1)
		return &kv.InvalidArgument{Field: "value", Reason: "too large"}
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)

	_, err := c.Put(testCtx(t), []byte("k"), []byte("v"))
	var ia *client.InvalidArgumentError
	if !errors.As(err, &ia) || !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("put: got %v, want InvalidArgumentError", err)
	}
	if ia.Field != "value" || ia.Reason != "too large" {
		t.Fatalf("invalid argument %+v, want field value, reason too large", ia)
	}
	if errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("put: %v is a known outcome", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("server saw %d attempts, want 1", n)
	}
}

func TestClient_NotLeaderRedirect(t *testing.T) {
	leader := clienttest.NewServer(t, "leader")
	follower := clienttest.NewServer(t, "follower")
	follower.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if c.Method == "status" {
			return nil
		}
		return &kv.NotLeader{LeaderID: new("leader"), LeaderAddr: new(leader.Addr)}
	})
	// The leader is not among the endpoints: only the redirect can find it.
	c := mustNewClient(t, []string{follower.Addr}, func(cfg *client.Config) { cfg.Backoff = time.Hour; cfg.MaxBackoff = time.Hour })
	ctx := testCtx(t)

	// A redirect is not delayed by the (one-hour) backoff.
	if _, err := c.Put(ctx, []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put: %v", err)
	}
	if v, ok := leader.Value("k"); !ok || string(v) != "v" {
		t.Fatalf("leader has k=%q (exists %v), want v", v, ok)
	}
	fIDs, lIDs := writeIDs(follower.Calls(), "put"), writeIDs(leader.Calls(), "put")
	if len(fIDs) != 1 || len(lIDs) != 1 || fIDs[0] != lIDs[0] {
		t.Fatalf("follower saw ids %v, leader %v: want one each, the same", fIDs, lIDs)
	}

	// The next request starts at the node that answered.
	if _, err := c.Get(ctx, []byte("k")); err != nil {
		t.Fatalf("get: %v", err)
	}
	if n := countMethod(follower.Calls(), "get"); n != 0 {
		t.Fatalf("follower saw %d gets, want 0", n)
	}
}

func TestClient_NotLeaderWithoutLeaderGivesUp(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error { return &kv.NotLeader{} })
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.MaxRetries = 2 })

	_, err := c.Put(testCtx(t), []byte("k"), []byte("v"))
	var nl *client.NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, client.ErrNotLeader) {
		t.Fatalf("put: got %v, want NotLeaderError", err)
	}
	if errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("put: %v: NotLeader means nothing was applied", err)
	}
	if n := countMethod(srv.Calls(), "put"); n != 3 {
		t.Fatalf("server saw %d attempts, want 1 + MaxRetries = 3", n)
	}
}

func TestClient_UnavailableRetried(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	var calls atomic.Int32
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if calls.Add(1) <= 2 {
			return &kv.Unavailable{Reason: "no quorum"}
		}
		return nil
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)

	if _, err := c.Put(testCtx(t), []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put: %v", err)
	}
	ids := writeIDs(srv.Calls(), "put")
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("request ids %v: want 3 attempts with the same id", ids)
	}
	if n := srv.Applies("k"); n != 1 {
		t.Fatalf("k applied %d times, want 1", n)
	}

	// Exhausted retries surface ErrUnavailable, a known outcome.
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error { return &kv.Unavailable{Reason: "no quorum"} })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, []byte("k"))
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("get: got %v, want ErrUnavailable", err)
	}
}

func TestClient_TimeoutRetriedWithSameRequestID(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	var calls atomic.Int32
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if calls.Add(1) == 1 {
			// The write commits, but the node answers Timeout.
			return &clienttest.AppliedError{Err: &kv.Timeout{Reason: "commit not confirmed in time"}}
		}
		return nil
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)

	first, err := c.CAS(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: new(int64(0)), Value: []byte("v")})
	if err != nil {
		t.Fatalf("cas: %v", err)
	}
	// The retry got the remembered result; applying twice would have failed the compare.
	if !first.Succeeded {
		t.Fatalf("cas: %+v, want succeeded (the retry must not apply again)", first)
	}
	ids := writeIDs(srv.Calls(), "cas")
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("request ids %v: want 2 attempts with the same id", ids)
	}
	if n := srv.Applies("k"); n != 1 {
		t.Fatalf("k applied %d times, want 1", n)
	}

	// The session is resolved and reused: the next write has the same client id, next sequence.
	if _, err := c.Put(ctx, []byte("k2"), []byte("v")); err != nil {
		t.Fatalf("put: %v", err)
	}
	next := writeIDs(srv.Calls(), "put")
	if len(next) != 1 || next[0].ClientID != ids[0].ClientID || next[0].Sequence != ids[0].Sequence+1 {
		t.Fatalf("next write id %v after %v: want same client id, next sequence", next, ids[0])
	}
}

func TestClient_TimeoutEveryRetryIsUnknownOutcome(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if c.Method == "put" && string(c.Key) == "k" {
			return &kv.Timeout{Reason: "commit not confirmed in time"}
		}
		return nil
	})
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.MaxRetries = 3 })
	ctx := testCtx(t)

	_, err := c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("put: got %v, want ErrUnknownOutcome", err)
	}
	var uo *client.UnknownOutcomeError
	if !errors.As(err, &uo) {
		t.Fatalf("put: %v is not an *UnknownOutcomeError", err)
	}
	ids := writeIDs(srv.Calls(), "put")
	if len(ids) != 4 {
		t.Fatalf("server saw %d attempts, want 1 + MaxRetries = 4", len(ids))
	}
	for _, id := range ids {
		if id != uo.RequestID {
			t.Fatalf("attempt id %v differs from the reported id %v", id, uo.RequestID)
		}
	}
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("put: %v does not carry the last error, ErrTimeout", err)
	}

	// The unresolved session is never reused: the next write comes from another client id.
	if _, err := c.Put(ctx, []byte("other"), []byte("v")); err != nil {
		t.Fatalf("put other: %v", err)
	}
	ids = writeIDs(srv.Calls(), "put")
	if last := ids[len(ids)-1]; last.ClientID == uo.RequestID.ClientID {
		t.Fatalf("write after an unknown outcome reused client id %d", last.ClientID)
	}

	// Retrying with the reported id is possible through CAS.
	srv.SetHook(nil)
	resp, err := c.CAS(ctx, &kv.CASRequest{Key: []byte("c"), ExpectedModIndex: new(int64(0)), Value: []byte("v"), RequestID: &uo.RequestID})
	if err != nil || !resp.Succeeded {
		t.Fatalf("cas with a caller's id: %+v, %v", resp, err)
	}
	cids := writeIDs(srv.Calls(), "cas")
	if len(cids) != 1 || cids[0].ClientID != uo.RequestID.ClientID || cids[0].Sequence != uo.RequestID.Sequence {
		t.Fatalf("cas ids %v, want the caller's %v", cids, uo.RequestID)
	}
}

func TestClient_ConcurrentWritesNeverShareASession(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	// Some writes time out after applying, so sessions get dropped and retried.
	var n atomic.Int32
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if n.Add(1)%7 == 0 {
			return &clienttest.AppliedError{Err: &kv.Timeout{Reason: "slow"}}
		}
		return nil
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)

	const workers, each = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Appendf(nil, "w%d-%d", w, i)
				if _, err := c.Put(ctx, key, []byte("v")); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("put: %v", err)
	}

	if o := srv.Overlaps(); o != 0 {
		t.Fatalf("%d writes arrived while another with the same client id was in flight", o)
	}
	// Per client id, sequences never go down, and a repeat is only ever a retry of the same write.
	lastSeq := make(map[int64]int64)
	lastKey := make(map[int64]string)
	for _, call := range srv.Calls() {
		if call.RequestID == nil {
			continue
		}
		id := call.RequestID
		prev, ok := lastSeq[id.ClientID]
		switch {
		case ok && id.Sequence < prev:
			t.Fatalf("client id %d: sequence %d after %d", id.ClientID, id.Sequence, prev)
		case ok && id.Sequence == prev && lastKey[id.ClientID] != string(call.Key):
			t.Fatalf("client id %d: sequence %d reused for a different write", id.ClientID, id.Sequence)
		}
		lastSeq[id.ClientID], lastKey[id.ClientID] = id.Sequence, string(call.Key)
	}
	for w := range workers {
		for i := range each {
			key := fmt.Sprintf("w%d-%d", w, i)
			if a := srv.Applies(key); a != 1 {
				t.Fatalf("%s applied %d times, want 1", key, a)
			}
		}
	}
}

func TestClient_ContextDeadline(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		<-ctx.Done() // hang until the client goes away
		return ctx.Err()
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)

	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, []byte("k"))
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get: got %v, want context.DeadlineExceeded", err)
	}
	if took > deadline+2*time.Second {
		t.Fatalf("get returned after %v, deadline was %v", took, deadline)
	}

	// A write sent before the deadline ends with an unknown outcome.
	ctx, cancel = context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err = c.Put(ctx, []byte("k"), []byte("v"))
	if !errors.Is(err, client.ErrUnknownOutcome) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put: got %v, want ErrUnknownOutcome and context.DeadlineExceeded", err)
	}

	// Cancellation interrupts a call too.
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, []byte("k"))
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "the retried get to reach the server", func() bool { return countMethod(srv.Calls(), "get") == 2 })
	cancel()
	if err := testutil.Receive(t, 5*time.Second, "the get interrupted by cancellation", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("get: got %v, want context.Canceled", err)
	}
}

func TestClient_ConnectionFailureTriesNextEndpoint(t *testing.T) {
	dead := testutil.DeadAddr(t)
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{dead, srv.Addr}, nil)

	if _, err := c.Put(testCtx(t), []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put: %v", err)
	}
	if n := srv.Applies("k"); n != 1 {
		t.Fatalf("k applied %d times, want 1", n)
	}

	// With no live endpoint, nothing was sent: a known failure, not an unknown outcome.
	c2 := mustNewClient(t, []string{dead}, func(cfg *client.Config) { cfg.MaxRetries = 1 })
	_, err := c2.Put(testCtx(t), []byte("k"), []byte("v"))
	if err == nil || errors.Is(err, client.ErrUnknownOutcome) {
		t.Fatalf("put to a dead endpoint: got %v, want a connection error", err)
	}
}

func TestClient_RequestTimeoutAfterSendIsUnknown(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) {
		cfg.Dial.RequestTimeout = 100 * time.Millisecond
		cfg.MaxRetries = 2
	})
	srv.SetHook(func(ctx context.Context, call clienttest.Call) error {
		<-ctx.Done()
		return ctx.Err()
	})
	// Each attempt hits the per-call socket timeout after sending: the client cannot know whether
	// the write applied.
	_, err := c.Put(testCtx(t), []byte("k"), []byte("v"))
	var uo *client.UnknownOutcomeError
	if !errors.As(err, &uo) {
		t.Fatalf("put: got %v, want *UnknownOutcomeError", err)
	}
	if n := countMethod(srv.Calls(), "put"); n != 3 {
		t.Fatalf("server saw %d attempts, want 3", n)
	}
}

func TestClient_Closed(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := c.Get(testCtx(t), []byte("k")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("get after close: got %v, want ErrClosed", err)
	}
}

// An attempt that the caller's deadline cuts short says only that time ran out: the error returned
// is the node's answer before it, wrapped with the context's error.
func TestClient_DeadlineKeepsTheLastAnswer(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var calls atomic.Int32
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if calls.Add(1) == 1 {
			return &kv.Unavailable{Reason: "no quorum"}
		}
		<-release // outlasts the caller's deadline
		return &kv.Unavailable{Reason: "no quorum"}
	})
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, []byte("k"))
	if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get: got %v, want ErrUnavailable wrapped with the deadline", err)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2 (the second one outlasting the deadline)", n)
	}
}
