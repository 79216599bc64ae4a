package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// fakeStore applies commands straight to a real fsm.FSM, without Raft, so
// handler tests see real write semantics. applyErr and panicOn inject
// failures.
type fakeStore struct {
	t        *testing.T
	f        *fsm.FSM
	mu       sync.Mutex // guards idx, applied, applyErr
	idx      uint64
	applied  int // commands the state machine applied or answered; refusals are not counted
	applyErr error
	panicOn  string
}

func mustNewFakeStore(t *testing.T) *fakeStore {
	t.Helper()
	f, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatalf("new fsm: %v", err)
	}
	return &fakeStore{t: t, f: f}
}

func (s *fakeStore) Apply(_ context.Context, cmd *kv.Command) (*kv.WriteResult_, error) {
	if s.panicOn == "apply" {
		panic("injected")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applyErr != nil {
		return nil, s.applyErr
	}
	data, err := fsm.EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	s.idx++
	r := s.f.Apply(&raft.Log{Index: s.idx, Term: 1, Type: raft.LogCommand, Data: data}).(*fsm.Result)
	if r.Err != nil {
		return nil, r.Err // refused: nothing applied
	}
	s.applied++
	return r.Write, nil
}

func (s *fakeStore) appliedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

func (s *fakeStore) Get(_ context.Context, key []byte, c kv.Consistency) (storage.Entry, bool, node.ReadInfo, error) {
	e, ok, lease, applied := s.f.GetLeased(key)
	info := node.ReadInfo{NodeID: "n1", Consistency: c, AppliedIndex: applied}
	if lease != 0 {
		info.Leases = []uint64{lease}
	}
	return e, ok, info, nil
}

func (s *fakeStore) Scan(_ context.Context, start, end []byte, reverse bool, limit int, keysOnly bool, c kv.Consistency) ([]storage.Entry, bool, node.ReadInfo, error) {
	es, leases, more, applied := s.f.ScanLeased(start, end, reverse, limit, keysOnly)
	return es, more, node.ReadInfo{NodeID: "n1", Consistency: c, AppliedIndex: applied, Leases: leases}, nil
}

// ThriftAddr knows n2's address only.
func (s *fakeStore) Watch(ctx context.Context, q fsm.WatchQuery, c kv.Consistency, wait time.Duration) (fsm.WatchResult, node.ReadInfo, error) {
	if s.panicOn == "watch" {
		panic("injected")
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res, err := s.f.Watch(wctx, q)
	return res, node.ReadInfo{NodeID: "n1", Consistency: c, AppliedIndex: res.Applied}, err
}

func (s *fakeStore) ThriftAddr(id string) string {
	if id == "n2" {
		return "127.0.0.1:19090"
	}
	return ""
}

func (s *fakeStore) Status() node.Status {
	return node.Status{ID: "n1", Role: node.RoleLeader, Term: 3, Engine: s.f.EngineName(), Keys: s.f.Len()}
}

func mustHandler(t *testing.T, limits Limits) (*Handler, *fakeStore) {
	t.Helper()
	s := mustNewFakeStore(t)
	return New(s, Config{Limits: limits, Version: "test"}), s
}

func i64(v int64) *int64 { return &v }
func bp(v bool) *bool    { return &v }
func i32(v int32) *int32 { return &v }

func TestHandler_PutGetDelete(t *testing.T) {
	h, _ := mustHandler(t, Limits{})
	ctx := context.Background()
	put, err := h.Put(ctx, &kv.PutRequest{Key: []byte("a"), Value: []byte("1")})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if put.Index != 1 || put.CreateIndex != 1 || put.Previous != nil {
		t.Fatalf("put = %+v, want index 1 create 1 no previous", put)
	}
	put2, err := h.Put(ctx, &kv.PutRequest{Key: []byte("a"), Value: []byte("2"), ReturnPrevious: bp(true)})
	if err != nil {
		t.Fatalf("put 2: %v", err)
	}
	if put2.Index != 2 || put2.CreateIndex != 1 || put2.Previous == nil || string(put2.Previous.Value) != "1" {
		t.Fatalf("put 2 = %+v, want index 2, create 1, previous value 1", put2)
	}
	get, err := h.Get(ctx, &kv.GetRequest{Key: []byte("a")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if !get.Found || string(get.Entry.Value) != "2" || get.Entry.ModIndex != 2 || get.Entry.CreateIndex != 1 {
		t.Fatalf("get = %+v", get.Entry)
	}
	if get.Info.Consistency != kv.Consistency_LINEARIZABLE || get.Info.AppliedIndex != 2 {
		t.Fatalf("get info = %+v, want linearizable at applied 2", get.Info)
	}
	del, err := h.DeleteKey(ctx, &kv.DeleteRequest{Key: []byte("a")})
	if err != nil || !del.Deleted || del.Index != 3 {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	get, err = h.Get(ctx, &kv.GetRequest{Key: []byte("a"), Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)})
	if err != nil || get.Found || get.Info.Consistency != kv.Consistency_STALE {
		t.Fatalf("get after delete = %+v, %v", get, err)
	}
	del, err = h.DeleteKey(ctx, &kv.DeleteRequest{Key: []byte("a")})
	if err != nil || del.Deleted {
		t.Fatalf("second delete = %+v, %v; want deleted=false", del, err)
	}
}

func TestHandler_CAS(t *testing.T) {
	h, _ := mustHandler(t, Limits{})
	ctx := context.Background()
	// Create only if absent.
	r, err := h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: i64(0), Value: []byte("v1")})
	if err != nil || !r.Succeeded || r.Current == nil || string(r.Current.Value) != "v1" {
		t.Fatalf("cas create = %+v, %v", r, err)
	}
	r, err = h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: i64(0), Value: []byte("v2")})
	if err != nil || r.Succeeded || r.Current == nil || string(r.Current.Value) != "v1" {
		t.Fatalf("cas create again = %+v, %v; want failure with current v1", r, err)
	}
	r, err = h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedValue: []byte("v1"), Value: []byte("v2")})
	if err != nil || !r.Succeeded || r.Index != 3 {
		t.Fatalf("cas by value = %+v, %v", r, err)
	}
	r, err = h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: i64(3), Remove: bp(true)})
	if err != nil || !r.Succeeded || r.Current != nil {
		t.Fatalf("cas delete = %+v, %v", r, err)
	}
	g, _ := h.Get(ctx, &kv.GetRequest{Key: []byte("k")})
	if g.Found {
		t.Fatalf("key still present after CAS delete")
	}
}

func TestHandler_Txn(t *testing.T) {
	h, _ := mustHandler(t, Limits{})
	ctx := context.Background()
	if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte("x"), Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	eq := kv.CompareOp_EQUAL
	r, err := h.Txn(ctx, &kv.TxnRequest{
		Compares: []*kv.Compare{{Key: []byte("x"), Target: kv.CompareTarget_VALUE, Op: &eq, Value: []byte("1")}},
		Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("y"), Value: []byte("2")}, {Type: kv.OpType_GET, Key: []byte("y")}},
		Failure:  []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("x")}},
	})
	if err != nil || !r.Succeeded || len(r.Results) != 2 || !r.Results[1].Found || string(r.Results[1].Entry.Value) != "2" {
		t.Fatalf("txn = %+v, %v", r, err)
	}
	r, err = h.Txn(ctx, &kv.TxnRequest{
		Compares: []*kv.Compare{{Key: []byte("nope"), Target: kv.CompareTarget_EXISTS, Exists: bp(true)}},
		Success:  []*kv.Op{},
		Failure:  []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("x")}},
	})
	if err != nil || r.Succeeded || len(r.Results) != 1 || !r.Results[0].Found {
		t.Fatalf("txn failure branch = %+v, %v", r, err)
	}
}

func TestHandler_Scan(t *testing.T) {
	h, _ := mustHandler(t, Limits{MaxScanPage: 3})
	ctx := context.Background()
	for _, k := range []string{"a1", "a2", "a3", "a4", "a5", "b1", "b2"} {
		if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(r *kv.ScanResponse) string {
		var b bytes.Buffer
		for _, e := range r.Entries {
			b.Write(e.Key)
			b.WriteByte(' ')
		}
		return b.String()
	}
	cases := []struct {
		name     string
		req      *kv.ScanRequest
		want     string
		wantCont string
	}{
		{"prefix pages at max page", &kv.ScanRequest{Prefix: []byte("a")}, "a1 a2 a3 ", "a3\x00"},
		{"prefix continuation", &kv.ScanRequest{Prefix: []byte("a"), StartKey: []byte("a3\x00")}, "a4 a5 ", ""},
		{"range", &kv.ScanRequest{StartKey: []byte("a2"), EndKey: []byte("a4")}, "a2 a3 ", ""},
		{"reverse limit", &kv.ScanRequest{Prefix: []byte("a"), Reverse: bp(true), Limit: i32(2)}, "a5 a4 ", "a4"},
		{"reverse continuation", &kv.ScanRequest{Prefix: []byte("a"), Reverse: bp(true), EndKey: []byte("a4")}, "a3 a2 a1 ", ""},
		{"empty range", &kv.ScanRequest{StartKey: []byte("b"), EndKey: []byte("a")}, "", ""},
		{"prefix b", &kv.ScanRequest{Prefix: []byte("b")}, "b1 b2 ", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := h.Scan(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys(r); got != tc.want {
				t.Errorf("keys = %q, want %q", got, tc.want)
			}
			if string(r.Continuation) != tc.wantCont {
				t.Errorf("continuation = %q, want %q", r.Continuation, tc.wantCont)
			}
		})
	}
	r, err := h.Scan(ctx, &kv.ScanRequest{Prefix: []byte("b"), KeysOnly: bp(true)})
	if err != nil || len(r.Entries) != 2 || r.Entries[0].Value != nil {
		t.Fatalf("keys-only scan = %+v, %v", r, err)
	}
}

func TestHandler_InvalidArguments(t *testing.T) {
	h, s := mustHandler(t, Limits{MaxKeySize: 8, MaxValueSize: 16, MaxTxnOps: 2})
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 17)
	bad := kv.Consistency(9)
	ops := func(n int) []*kv.Op {
		out := make([]*kv.Op, n)
		for i := range out {
			out[i] = &kv.Op{Type: kv.OpType_GET, Key: []byte("k")}
		}
		return out
	}
	cases := []struct {
		name  string
		call  func() error
		field string
	}{
		{"get empty key", func() error { _, err := h.Get(ctx, &kv.GetRequest{}); return err }, "key"},
		{"get bad consistency", func() error {
			_, err := h.Get(ctx, &kv.GetRequest{Key: []byte("k"), Consistency: &bad})
			return err
		}, "consistency"},
		{"put oversize key", func() error {
			_, err := h.Put(ctx, &kv.PutRequest{Key: []byte("123456789"), Value: []byte("v")})
			return err
		}, "key"},
		{"put oversize value", func() error { _, err := h.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: big}); return err }, "value"},
		{"put zero client id", func() error {
			_, err := h.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestID: &kv.RequestID{Sequence: 1}})
			return err
		}, "request_id.client_id"},
		{"put zero sequence", func() error {
			_, err := h.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestID: &kv.RequestID{ClientID: 5}})
			return err
		}, "request_id.sequence"},
		{"cas no expectation", func() error { _, err := h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), Value: []byte("v")}); return err }, "expected_value"},
		{"cas both expectations", func() error {
			_, err := h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedValue: []byte("a"), ExpectedModIndex: i64(1), Value: []byte("v")})
			return err
		}, "expected_mod_index"},
		{"cas remove with value", func() error {
			_, err := h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: i64(1), Remove: bp(true), Value: []byte("v")})
			return err
		}, "value"},
		{"cas missing value", func() error {
			_, err := h.Cas(ctx, &kv.CASRequest{Key: []byte("k"), ExpectedModIndex: i64(1)})
			return err
		}, "value"},
		{"txn too many ops", func() error { _, err := h.Txn(ctx, &kv.TxnRequest{Success: ops(3)}); return err }, "success"},
		{"txn put without value", func() error {
			_, err := h.Txn(ctx, &kv.TxnRequest{Failure: []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("k")}}})
			return err
		}, "failure[0].value"},
		{"txn exists with less", func() error {
			less := kv.CompareOp_LESS
			_, err := h.Txn(ctx, &kv.TxnRequest{Compares: []*kv.Compare{{Key: []byte("k"), Target: kv.CompareTarget_EXISTS, Exists: bp(true), Op: &less}}})
			return err
		}, "compares[0].op"},
		{"txn value compare without operand", func() error {
			_, err := h.Txn(ctx, &kv.TxnRequest{Compares: []*kv.Compare{{Key: []byte("k"), Target: kv.CompareTarget_VALUE}}})
			return err
		}, "compares[0].value"},
		{"scan negative limit", func() error { _, err := h.Scan(ctx, &kv.ScanRequest{Limit: i32(-1)}); return err }, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			var ia *kv.InvalidArgument
			if !errors.As(err, &ia) {
				t.Fatalf("err = %T %v, want *kv.InvalidArgument", err, err)
			}
			if ia.Field != tc.field || ia.Reason == "" {
				t.Errorf("InvalidArgument{%q, %q}, want field %q and a reason", ia.Field, ia.Reason, tc.field)
			}
		})
	}
	if n := s.appliedCount(); n != 0 {
		t.Fatalf("%d commands applied by invalid requests, want 0", n)
	}
}

func TestHandler_ErrorTable(t *testing.T) {
	id := &kv.RequestID{ClientID: 7, Sequence: 3}
	cases := []struct {
		name  string
		err   error
		check func(t *testing.T, got error)
	}{
		{"not leader with hint", fmt.Errorf("apply: %w", &node.NotLeaderError{LeaderID: "n2", LeaderRaftAddr: "127.0.0.1:9"}), func(t *testing.T, got error) {
			nl, ok := got.(*kv.NotLeader)
			if !ok || nl.GetLeaderID() != "n2" || nl.GetLeaderAddr() != "127.0.0.1:19090" {
				t.Fatalf("got %T %+v", got, got)
			}
		}},
		{"no leader", node.ErrNoLeader, func(t *testing.T, got error) {
			nl, ok := got.(*kv.NotLeader)
			if !ok || nl.LeaderID != nil {
				t.Fatalf("got %T %+v", got, got)
			}
		}},
		{"timeout keeps request id", fmt.Errorf("x: %w", node.ErrTimeout), func(t *testing.T, got error) {
			to, ok := got.(*kv.Timeout)
			if !ok || to.RequestID != id {
				t.Fatalf("got %T %+v", got, got)
			}
		}},
		{"unavailable", fmt.Errorf("x: %w", node.ErrUnavailable), func(t *testing.T, got error) {
			if _, ok := got.(*kv.Unavailable); !ok {
				t.Fatalf("got %T", got)
			}
		}},
		{"shutdown", node.ErrShutdown, func(t *testing.T, got error) {
			if _, ok := got.(*kv.Unavailable); !ok {
				t.Fatalf("got %T", got)
			}
		}},
		{"stale sequence", fmt.Errorf("apply: %w", fsm.ErrStaleSequence), func(t *testing.T, got error) {
			ia, ok := got.(*kv.InvalidArgument)
			if !ok || ia.Field != "request_id.sequence" {
				t.Fatalf("got %T %+v", got, got)
			}
		}},
		{"unknown stays internal", errors.New("disk on fire"), func(t *testing.T, got error) {
			switch got.(type) {
			case *kv.NotLeader, *kv.Timeout, *kv.Unavailable, *kv.InvalidArgument:
				t.Fatalf("got declared exception %T for an unknown error", got)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, s := mustHandler(t, Limits{})
			s.applyErr = tc.err
			_, err := h.Put(context.Background(), &kv.PutRequest{Key: []byte("k"), Value: []byte("v"), RequestID: id})
			tc.check(t, err)
		})
	}
}

func TestHandler_PanicIsAnError(t *testing.T) {
	h, s := mustHandler(t, Limits{})
	s.panicOn = "apply"
	_, err := h.Put(context.Background(), &kv.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if !errors.Is(err, errInternal) {
		t.Fatalf("err = %v, want errInternal", err)
	}
	s.panicOn = ""
	if _, err := h.Put(context.Background(), &kv.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("put after recovered panic: %v", err)
	}
}

func TestHandler_Status(t *testing.T) {
	h, _ := mustHandler(t, Limits{})
	st, err := h.Status(context.Background())
	if err != nil || st.NodeID != "n1" || st.Role != kv.Role_LEADER || st.Term != 3 || st.Version != "test" || st.LastContactMs != 0 {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("\xff\xff"), nil},
		{[]byte("ab"), []byte("ac")},
	} {
		if got := PrefixEnd(tc.in); !bytes.Equal(got, tc.want) {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHandler_ScanStopsAtTheByteBudget(t *testing.T) {
	h, _ := mustHandler(t, Limits{MaxResponseBytes: 1000})
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte(fmt.Sprintf("k%d", i)), Value: bytes.Repeat([]byte("v"), 300)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := h.Scan(ctx, &kv.ScanRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Entries) != 2 || string(r.Continuation) != "k1\x00" {
		t.Fatalf("page of %d entries, continuation %q; want 2 entries and k1\\x00", len(r.Entries), r.Continuation)
	}
	// Keys only fit more per page.
	r, err = h.Scan(ctx, &kv.ScanRequest{KeysOnly: bp(true)})
	if err != nil || len(r.Entries) != 10 || r.Continuation != nil {
		t.Fatalf("keys-only page: %d entries, continuation %q, %v", len(r.Entries), r.Continuation, err)
	}
	// A single entry larger than the budget is still served.
	h2, _ := mustHandler(t, Limits{MaxResponseBytes: 100})
	if _, err := h2.Put(ctx, &kv.PutRequest{Key: []byte("big"), Value: bytes.Repeat([]byte("v"), 300)}); err != nil {
		t.Fatal(err)
	}
	if r, err := h2.Scan(ctx, &kv.ScanRequest{}); err != nil || len(r.Entries) != 1 {
		t.Fatalf("oversize single entry: %+v, %v", r, err)
	}
}

func TestHandler_TxnWhoseAnswerCannotFitIsRefused(t *testing.T) {
	h, s := mustHandler(t, Limits{MaxResponseBytes: 1000})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte(fmt.Sprintf("k%d", i)), Value: bytes.Repeat([]byte("v"), 400)}); err != nil {
			t.Fatal(err)
		}
	}
	before := s.appliedCount()
	gets := []*kv.Op{{Type: kv.OpType_GET, Key: []byte("k0")}, {Type: kv.OpType_GET, Key: []byte("k1")}, {Type: kv.OpType_GET, Key: []byte("k2")}}
	_, err := h.Txn(ctx, &kv.TxnRequest{Compares: []*kv.Compare{}, Success: gets, Failure: []*kv.Op{}})
	var ia *kv.InvalidArgument
	if !errors.As(err, &ia) || ia.Field != "success" {
		t.Fatalf("err = %v, want InvalidArgument on success", err)
	}
	// A PUT's result carries the previous entry, counted too; and a GET
	// after the txn's own PUT sees the new (small) value.
	puts := []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("k0"), Value: []byte("s")}, {Type: kv.OpType_GET, Key: []byte("k0")}, {Type: kv.OpType_GET, Key: []byte("k1")}}
	if _, err := h.Txn(ctx, &kv.TxnRequest{Compares: []*kv.Compare{}, Success: puts, Failure: []*kv.Op{}}); err != nil {
		t.Fatalf("txn within budget refused: %v", err)
	}
	if s.appliedCount() != before+1 {
		t.Fatalf("applied %d commands, want exactly the one within budget", s.appliedCount()-before)
	}
}

func TestInternal_ValidatesForwardedCommands(t *testing.T) {
	h, s := mustHandler(t, Limits{MaxKeySize: 8})
	in := NewInternal(h, leaderFake{s}, nil)
	_, err := in.Apply(context.Background(), &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("123456789"), Value: []byte("v")})
	var ia *kv.InvalidArgument
	if !errors.As(err, &ia) || ia.Field != "key" {
		t.Fatalf("err = %v, want InvalidArgument on key", err)
	}
	if _, err := in.Apply(context.Background(), &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("ok"), Value: []byte("v")}); err != nil {
		t.Fatalf("valid forwarded put: %v", err)
	}
	if s.appliedCount() != 1 {
		t.Fatalf("applied %d, want 1", s.appliedCount())
	}
}

// leaderFake adapts fakeStore to LeaderStore.
type leaderFake struct{ *fakeStore }

func (l leaderFake) ApplyLocal(ctx context.Context, cmd *kv.Command) (*kv.WriteResult_, error) {
	return l.Apply(ctx, cmd)
}

func (l leaderFake) ReadIndex(context.Context) (uint64, error) { return l.f.AppliedIndex(), nil }

func (l leaderFake) LeaderView() (uint64, string) { return 1, l.Status().ID }

func TestHandler_ObservesEveryRequestWithItsOutcome(t *testing.T) {
	s := mustNewFakeStore(t)
	type obs struct{ method, outcome string }
	var mu sync.Mutex
	var got []obs
	h := New(s, Config{Observe: func(method, outcome string, d time.Duration) {
		mu.Lock()
		got = append(got, obs{method, outcome})
		mu.Unlock()
	}})
	ctx := context.Background()
	_, _ = h.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: []byte("v")})
	_, _ = h.Get(ctx, &kv.GetRequest{})
	s.panicOn = "apply"
	_, _ = h.DeleteKey(ctx, &kv.DeleteRequest{Key: []byte("k")})
	want := []obs{{"put", "ok"}, {"get", "invalid_argument"}, {"delete", "internal_error"}}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
}

func TestHandler_TxnRetryAfterItGrewTheStateGetsTheFirstOutcome(t *testing.T) {
	h, s := mustHandler(t, Limits{MaxResponseBytes: 1000})
	ctx := context.Background()
	big := bytes.Repeat([]byte("v"), 600)
	id := &kv.RequestID{ClientID: 42, Sequence: 1}
	req := &kv.TxnRequest{Compares: []*kv.Compare{}, Failure: []*kv.Op{}, RequestID: id,
		Success: []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("a"), Value: big}, {Type: kv.OpType_PUT, Key: []byte("b"), Value: big}}}
	first, err := h.Txn(ctx, req)
	if err != nil || !first.Succeeded {
		t.Fatalf("first attempt: %+v, %v", first, err)
	}
	// The answer was lost; the retry finds a and b now large. Estimated
	// afresh it would be refused as InvalidArgument ("not applied").
	again, err := h.Txn(ctx, req)
	if err != nil || again.Index != first.Index {
		t.Fatalf("retry answered %+v, %v; want the first outcome at %d", again, err, first.Index)
	}
	if s.appliedCount() != 2 {
		t.Fatalf("%d commands reached the state machine, want 2 (the txn and its retry, answered from the request-id table)", s.appliedCount())
	}
	// A new request of the same shape is refused before it is proposed.
	req.RequestID = &kv.RequestID{ClientID: 42, Sequence: 2}
	var ia *kv.InvalidArgument
	if _, err := h.Txn(ctx, req); !errors.As(err, &ia) {
		t.Fatalf("new txn whose answer cannot fit: %v, want InvalidArgument", err)
	}
}

func TestInternal_LowersTheForwardedAnswerBudget(t *testing.T) {
	h, s := mustHandler(t, Limits{MaxResponseBytes: 1000})
	ctx := context.Background()
	if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 2000)}); err != nil {
		t.Fatal(err)
	}
	in := NewInternal(h, leaderFake{s}, nil)
	// A follower with a larger budget stamped its own; the leader's is
	// what the state machine applies with.
	budget := int64(1 << 20)
	get := &kv.Command{Op: kv.CommandOp_TXN, Compares: []*kv.Compare{}, Failure: []*kv.Op{},
		Success: []*kv.Op{{Type: kv.OpType_GET, Key: []byte("k")}}, MaxAnswerBytes: &budget}
	_, err := in.Apply(ctx, get)
	var ia *kv.InvalidArgument
	if !errors.As(err, &ia) || ia.Field != "success" || !strings.Contains(ia.Reason, "1000 bytes") {
		t.Fatalf("err = %v, want InvalidArgument on success naming the leader's 1000 bytes", err)
	}
	// A command from a node that stamps nothing gets the leader's budget too.
	get.MaxAnswerBytes = nil
	if _, err := in.Apply(ctx, get); !errors.As(err, &ia) || ia.Field != "success" {
		t.Fatalf("unstamped: err = %v, want InvalidArgument on success", err)
	}
	if s.appliedCount() != 1 {
		t.Fatalf("applied %d commands, want only the put", s.appliedCount())
	}
}

func TestHandler_ObservesClusterAndInternalCalls(t *testing.T) {
	s := mustNewFakeStore(t)
	var mu sync.Mutex
	var got []string
	h := New(s, Config{Observe: func(method, outcome string, d time.Duration) {
		mu.Lock()
		got = append(got, method+"="+outcome)
		mu.Unlock()
	}})
	in := NewInternal(h, leaderFake{s}, nil)
	c := NewCluster(h, nil, nil, nil)
	ctx := context.Background()
	_, _ = h.Status(ctx)
	_, _ = in.Apply(ctx, nil)
	_, _ = in.LeaderView(ctx)
	_, _ = c.RemoveMember(ctx, &kv.RemoveMemberRequest{})
	_, _ = in.GossipKeysLocal(ctx, &kv.GossipKeyRequest{Op: kv.GossipKeyOp_LIST})
	want := []string{"status=ok", "internal.apply=invalid_argument", "internal.leader_view=ok", "cluster.remove_member=invalid_argument", "internal.gossip_keys_local=ok"}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
}
