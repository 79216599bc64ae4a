package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/lease"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The fake store's lease calls: a real lease.Keeper over the fake's FSM,
// promoted as a leader's is, revoking through the fake's Apply.

var keepers sync.Map // *fakeStore -> *lease.Keeper

func (s *fakeStore) keeper() *lease.Keeper {
	if k, ok := keepers.Load(s); ok {
		return k.(*lease.Keeper)
	}
	k := lease.New(lease.Config{Table: s.f, Revoke: func(ctx context.Context, id uint64) error {
		lid := int64(id)
		_, err := s.Apply(ctx, &kv.Command{Op: kv.CommandOp_LEASE_REVOKE, LeaseID: &lid})
		return err
	}})
	k.Promote()
	actual, _ := keepers.LoadOrStore(s, k)
	return actual.(*lease.Keeper)
}

func (s *fakeStore) KeepAlive(_ context.Context, id uint64) (time.Duration, error) {
	return s.keeper().KeepAlive(id, time.Now())
}

func (s *fakeStore) LeaseInfo(_ context.Context, id uint64, keys bool) (node.LeaseInfo, error) {
	st, err := s.keeper().Info(id)
	if err != nil {
		return node.LeaseInfo{}, err
	}
	info := node.LeaseInfo{Status: st}
	if keys {
		info.KeyList = s.f.LeaseKeys(id, 0)
	}
	return info, nil
}

func (s *fakeStore) Leases(_ context.Context, after uint64, limit int) ([]lease.Status, bool, error) {
	return s.keeper().List(after, limit)
}

func (l leaderFake) KeepAliveLocal(ctx context.Context, id uint64) (time.Duration, error) {
	return l.KeepAlive(ctx, id)
}

func (l leaderFake) LeaseInfoLocal(ctx context.Context, id uint64, keys bool) (node.LeaseInfo, error) {
	return l.LeaseInfo(ctx, id, keys)
}

func (l leaderFake) LeasesLocal(ctx context.Context, after uint64, limit int) ([]lease.Status, bool, error) {
	return l.Leases(ctx, after, limit)
}

func wantLeaseNotFound(t *testing.T, err error, id int64) {
	t.Helper()
	var lnf *kv.LeaseNotFound
	if !errors.As(err, &lnf) || lnf.LeaseID != id {
		t.Fatalf("error %T %v, want LeaseNotFound{%d}", err, err, id)
	}
}

func TestHandler_Leases(t *testing.T) {
	h, _ := mustHandler(t, Limits{MinLeaseTTL: time.Second, MaxLeaseTTL: time.Minute})
	ctx := context.Background()
	g, err := h.GrantLease(ctx, &kv.LeaseGrantRequest{TTLMs: 3000})
	if err != nil || g.LeaseID != g.Index || g.TTLMs != 3000 {
		t.Fatalf("grant: %v %v", g, err)
	}
	put, err := h.Put(ctx, &kv.PutRequest{Key: []byte("a"), Value: []byte("1"), LeaseID: &g.LeaseID})
	if err != nil || put.GetLeaseID() != g.LeaseID {
		t.Fatalf("put with lease: %v %v", put, err)
	}
	ttl := int64(2000)
	own, err := h.Put(ctx, &kv.PutRequest{Key: []byte("b"), Value: []byte("2"), TTLMs: &ttl})
	if err != nil || own.GetLeaseID() != own.Index {
		t.Fatalf("put with ttl: %v %v", own, err)
	}
	cas, err := h.Cas(ctx, &kv.CASRequest{Key: []byte("c"), Value: []byte("3"), ExpectedModIndex: i64(0), LeaseID: &g.LeaseID})
	if err != nil || !cas.Succeeded {
		t.Fatalf("cas with lease: %v %v", cas, err)
	}
	if _, err := h.Txn(ctx, &kv.TxnRequest{Success: []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("d"), Value: []byte("4"), LeaseID: &g.LeaseID}}}); err != nil {
		t.Fatalf("txn with lease: %v", err)
	}
	// Reads show each key's lease.
	if r, err := h.Get(ctx, &kv.GetRequest{Key: []byte("a")}); err != nil || r.Entry.GetLeaseID() != g.LeaseID {
		t.Fatalf("get a: %v %v", r, err)
	}
	sc, err := h.Scan(ctx, &kv.ScanRequest{})
	if err != nil || len(sc.Entries) != 4 {
		t.Fatalf("scan: %v %v", sc, err)
	}
	for _, e := range sc.Entries {
		want := g.LeaseID
		if string(e.Key) == "b" {
			want = own.Index
		}
		if e.GetLeaseID() != want {
			t.Fatalf("scan: %s has lease %d, want %d", e.Key, e.GetLeaseID(), want)
		}
	}
	if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte("plain"), Value: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.Get(ctx, &kv.GetRequest{Key: []byte("plain")}); r.Entry.LeaseID != nil {
		t.Fatalf("a key without a lease reads with lease %d", r.Entry.GetLeaseID())
	}
	ka, err := h.KeepAlive(ctx, &kv.KeepAliveRequest{LeaseID: g.LeaseID})
	if err != nil || ka.TTLMs != 3000 {
		t.Fatalf("keep-alive: %v %v", ka, err)
	}
	info, err := h.LeaseInfo(ctx, &kv.LeaseInfoRequest{LeaseID: g.LeaseID, Keys: bp(true)})
	if err != nil || info.KeyCount != 3 || fmt.Sprintf("%s", info.Keys) != "[a c d]" || info.RemainingMs <= 0 || info.RemainingMs > 3000 {
		t.Fatalf("info: %v %v", info, err)
	}
	list, err := h.ListLeases(ctx, &kv.LeaseListRequest{Limit: func() *int32 { v := int32(1); return &v }()})
	if err != nil || len(list.Leases) != 1 || list.Leases[0].LeaseID != g.LeaseID || list.GetContinuation() != g.LeaseID {
		t.Fatalf("list page 1: %v %v", list, err)
	}
	list, err = h.ListLeases(ctx, &kv.LeaseListRequest{AfterID: list.Continuation})
	if err != nil || len(list.Leases) != 1 || list.Leases[0].LeaseID != own.Index || list.Continuation != nil {
		t.Fatalf("list page 2: %v %v", list, err)
	}
	rv, err := h.RevokeLease(ctx, &kv.LeaseRevokeRequest{LeaseID: g.LeaseID})
	if err != nil || rv.Index <= g.Index {
		t.Fatalf("revoke: %v %v", rv, err)
	}
	for _, k := range []string{"a", "c", "d"} {
		if r, err := h.Get(ctx, &kv.GetRequest{Key: []byte(k)}); err != nil || r.Found {
			t.Fatalf("%s after revoke: %v %v", k, r, err)
		}
	}
	if r, err := h.Get(ctx, &kv.GetRequest{Key: []byte("b")}); err != nil || !r.Found {
		t.Fatalf("b (another lease) after revoke: %v %v", r, err)
	}

	// A lease that does not exist: LeaseNotFound everywhere.
	_, err = h.KeepAlive(ctx, &kv.KeepAliveRequest{LeaseID: g.LeaseID})
	wantLeaseNotFound(t, err, g.LeaseID)
	_, err = h.LeaseInfo(ctx, &kv.LeaseInfoRequest{LeaseID: g.LeaseID})
	wantLeaseNotFound(t, err, g.LeaseID)
	_, err = h.RevokeLease(ctx, &kv.LeaseRevokeRequest{LeaseID: g.LeaseID})
	wantLeaseNotFound(t, err, g.LeaseID)
	_, err = h.Put(ctx, &kv.PutRequest{Key: []byte("x"), Value: []byte("1"), LeaseID: &g.LeaseID})
	wantLeaseNotFound(t, err, g.LeaseID)
	_, err = h.Cas(ctx, &kv.CASRequest{Key: []byte("x"), Value: []byte("1"), ExpectedModIndex: i64(0), LeaseID: &g.LeaseID})
	wantLeaseNotFound(t, err, g.LeaseID)
	_, err = h.Txn(ctx, &kv.TxnRequest{Success: []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("x"), Value: []byte("1"), LeaseID: &g.LeaseID}}})
	wantLeaseNotFound(t, err, g.LeaseID)
	if r, _ := h.Get(ctx, &kv.GetRequest{Key: []byte("x")}); r.Found {
		t.Fatal("a put naming a missing lease applied")
	}
}

func TestHandler_LeaseLimits(t *testing.T) {
	h, _ := mustHandler(t, Limits{MinLeaseTTL: time.Second, MaxLeaseTTL: time.Minute, MaxLeases: 2, MaxLeaseKeys: 1})
	ctx := context.Background()
	wantInvalid := func(err error, field string) {
		t.Helper()
		var ia *kv.InvalidArgument
		if !errors.As(err, &ia) || ia.Field != field {
			t.Fatalf("error %T %v, want InvalidArgument on %s", err, err, field)
		}
	}
	_, err := h.GrantLease(ctx, &kv.LeaseGrantRequest{TTLMs: 999})
	wantInvalid(err, "ttl_ms")
	_, err = h.GrantLease(ctx, &kv.LeaseGrantRequest{TTLMs: 60001})
	wantInvalid(err, "ttl_ms")
	ttl := int64(500)
	_, err = h.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: []byte("v"), TTLMs: &ttl})
	wantInvalid(err, "ttl_ms")
	_, err = h.KeepAlive(ctx, &kv.KeepAliveRequest{LeaseID: 0})
	wantInvalid(err, "lease_id")
	g, err := h.GrantLease(ctx, &kv.LeaseGrantRequest{TTLMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.GrantLease(ctx, &kv.LeaseGrantRequest{TTLMs: 1000}); err != nil {
		t.Fatal(err)
	}
	_, err = h.GrantLease(ctx, &kv.LeaseGrantRequest{TTLMs: 1000})
	wantInvalid(err, "ttl_ms")
	if _, err := h.Put(ctx, &kv.PutRequest{Key: []byte("a"), Value: []byte("v"), LeaseID: &g.LeaseID}); err != nil {
		t.Fatal(err)
	}
	_, err = h.Put(ctx, &kv.PutRequest{Key: []byte("b"), Value: []byte("v"), LeaseID: &g.LeaseID})
	wantInvalid(err, "lease_id")
}
