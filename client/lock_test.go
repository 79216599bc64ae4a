package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
)

func TestClient_LeaseCalls(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	g, err := c.Grant(ctx, 3*time.Second)
	if err != nil || g.TTLMs != 3000 {
		t.Fatalf("grant: %v %v", g, err)
	}
	if _, err := c.Put(ctx, []byte("a"), []byte("1"), client.WithLease(g.LeaseID)); err != nil {
		t.Fatal(err)
	}
	own, err := c.Put(ctx, []byte("b"), []byte("2"), client.WithTTL(time.Second))
	if err != nil || own.GetLeaseID() != own.Index {
		t.Fatalf("put with ttl: %v %v", own, err)
	}
	if ttl, err := c.KeepAlive(ctx, g.LeaseID); err != nil || ttl != 3*time.Second {
		t.Fatalf("keep-alive: %v %v", ttl, err)
	}
	info, err := c.LeaseInfo(ctx, g.LeaseID, true)
	if err != nil || info.KeyCount != 1 || string(info.Keys[0]) != "a" {
		t.Fatalf("info: %v %v", info, err)
	}
	list, err := c.Leases(ctx, 0, 0)
	if err != nil || len(list.Leases) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := c.Revoke(ctx, g.LeaseID); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.Value("a"); ok {
		t.Fatal("key survived its lease's revoke")
	}
	_, err = c.KeepAlive(ctx, g.LeaseID)
	var lnf *client.LeaseNotFoundError
	if !errors.Is(err, client.ErrLeaseNotFound) || !errors.As(err, &lnf) || lnf.ID != g.LeaseID {
		t.Fatalf("keep-alive of a revoked lease: %v", err)
	}
	if _, err := c.Put(ctx, []byte("c"), []byte("1"), client.WithLease(g.LeaseID)); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("put with a revoked lease: %v", err)
	}
}

func TestClient_LockExcludesAndFences(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	first, err := c.Lock(ctx, "job", client.LockOptions{TTL: 3 * time.Second, Value: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *client.Lock, 1)
	go func() {
		second, err := c.Lock(ctx, "job", client.LockOptions{TTL: 3 * time.Second, MaxPoll: 50 * time.Millisecond})
		if err != nil {
			t.Error(err)
		}
		got <- second
	}()
	// The second waits while the first holds the lock.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	select {
	case l := <-got:
		t.Fatalf("second acquired a held lock: %+v", l)
	case <-wctx.Done():
	}
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	second := testutil.Receive(t, 10*time.Second, "second lock", got)
	if second == nil || second.Token <= first.Token {
		t.Fatalf("tokens %d then %v: must increase", first.Token, second)
	}
	// Its lease ending (as the leader's expiry does) tells the holder.
	if !srv.ExpireLease(second.LeaseID) {
		t.Fatal("second's lease not found")
	}
	testutil.Receive(t, 10*time.Second, "lost lock", second.Lost())
	if !errors.Is(second.Err(), client.ErrLeaseNotFound) {
		t.Fatalf("lost because %v", second.Err())
	}
	if err := second.Unlock(ctx); err != nil {
		t.Fatalf("unlock of a lost lock: %v", err)
	}

	// Elections publish their value.
	lead, err := c.Campaign(ctx, "svc", []byte("node-a"), client.LockOptions{TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	v, token, found, err := c.ElectionLeader(ctx, "svc")
	if err != nil || !found || string(v) != "node-a" || token != lead.Token {
		t.Fatalf("leader %q %d %v %v", v, token, found, err)
	}
	if err := lead.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, found, _ := c.ElectionLeader(ctx, "svc"); found {
		t.Fatal("leader after resigning")
	}
}

// A grant whose reply arrives after its TTL (e.g. retried after a lost
// reply) may already have been revoked by the leader, which counts from
// when it learned of the grant: the lock must not be held from then on.
func TestClient_LockCountsFromGrantSent(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	const ttl = 100 * time.Millisecond
	srv.SetHook(func(ctx context.Context, call clienttest.Call) error {
		if call.Method == "grant_lease" {
			// A slow reply: the lease's countdown has run out by the time
			// the client hears of it.
			start := time.Now()
			return testutil.Poll(10*time.Second, func() error {
				if time.Since(start) <= ttl {
					return errors.New("TTL not yet passed")
				}
				return nil
			})
		}
		return nil
	})
	l, err := c.Lock(ctx, "slow", client.LockOptions{TTL: ttl})
	if err != nil {
		if !errors.Is(err, client.ErrLeaseExpired) {
			t.Fatalf("lock: %v, want ErrLeaseExpired", err)
		}
		return
	}
	defer l.Unlock(ctx)
	testutil.Receive(t, 10*time.Second, "lock lost", l.Lost())
	if !errors.Is(l.Err(), client.ErrLeaseExpired) {
		t.Fatalf("lost: %v, want ErrLeaseExpired", l.Err())
	}
}

// KeepAliveLoop gives up a tenth of the TTL before the leader may revoke
// the lease: counting from a send 95% of a TTL ago it sends nothing.
func TestClient_KeepAliveLoopSafetyMargin(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx := testCtx(t)
	const ttl = 10 * time.Second
	g, err := c.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.KeepAliveLoopFrom(lctx, g.LeaseID, ttl, time.Now().Add(-ttl*95/100), nil) }()
	if err := testutil.Receive(t, 5*time.Second, "keep-alive loop to give up", done); !errors.Is(err, client.ErrLeaseExpired) {
		t.Fatalf("loop: %v, want ErrLeaseExpired", err)
	}
	for _, call := range srv.Calls() {
		if call.Method == "keep_alive" {
			t.Fatal("sent a keep-alive inside the safety margin")
		}
	}
}
