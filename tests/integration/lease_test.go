package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Lease expiry over real processes. The leader revokes a lease once a
// whole TTL has passed since it received the last keep-alive; every node
// applies the revoke at the same index. A key is therefore never gone
// before TTL after the client sent its last acknowledged keep-alive
// (the leader received it later), on any node, and is gone within TTL +
// 1 s after that keep-alive's answer arrived (the leader checks every
// 50 ms, then one commit, then each node applies it).

const leaseTTL = 3 * time.Second

// staleWatch polls key with STALE reads on each node until every node has
// seen it gone or until passes, and returns when each node first saw it
// gone (the zero time: never). A read that finds the key absent is
// stamped with the time its answer arrived, so "gone at" is an upper
// bound of when that node applied the revoke.
func staleWatch(t *testing.T, procs []*proc, key string, until time.Time) map[string]time.Time {
	t.Helper()
	gone := make(map[string]time.Time)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range procs {
		conn := rawConn(t, p.thriftAddr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				r, err := kvCall(t, conn, 2*time.Second, func(ctx context.Context, c *kv.KVClient) (*kv.GetResponse, error) {
					return c.Get(ctx, &kv.GetRequest{Key: []byte(key), Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)})
				})
				at := time.Now()
				if err == nil && !r.Found {
					mu.Lock()
					gone[p.id] = at
					mu.Unlock()
					return
				}
				time.Sleep(10 * time.Millisecond) // the polling interval of this watch, not a wait for a condition
			}
		}()
	}
	wg.Wait()
	return gone
}

// mustKeepAlive sends keep-alives for lease id, one every TTL/3, for the
// given time, and returns when the last acknowledged one was sent and when
// its answer arrived.
func mustKeepAlive(t *testing.T, c *client.Client, id int64, d time.Duration) (sent, acked time.Time) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) || sent.IsZero() {
		s := time.Now()
		ttl, err := c.KeepAlive(ctxTimeout(t, 5*time.Second), id)
		if err != nil {
			t.Fatalf("keep-alive %d: %v", id, err)
		}
		if ttl != leaseTTL {
			t.Fatalf("keep-alive answered ttl %v", ttl)
		}
		sent, acked = s, time.Now()
		time.Sleep(leaseTTL / 3) // the keep-alive interval
	}
	return sent, acked
}

func endpoints(c *testCluster) []string {
	var eps []string
	for _, p := range c.procs {
		eps = append(eps, p.thriftAddr)
	}
	return eps
}

func TestLease_TTLKeyExpiresOnTimeOnEveryNode(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLeader(10 * time.Second)
	cl := mustClient(t, endpoints(c)...)
	put, err := cl.Put(ctxTimeout(t, 10*time.Second), []byte("ttl/key"), []byte("v"), client.WithTTL(leaseTTL))
	if err != nil {
		t.Fatal(err)
	}
	id := put.GetLeaseID()
	if id != put.Index {
		t.Fatalf("lease id %d, want the put's index %d", id, put.Index)
	}
	// Kept alive for longer than its TTL, through a follower too.
	sent, acked := mustKeepAlive(t, cl, id, 2*leaseTTL)
	// Discovery off and a follower as the only endpoint: the follower must
	// forward the keep-alive to the leader (Internal.keep_alive), which
	// the leader's and the follower's request counters show.
	leader := c.waitLeader(10 * time.Second)
	f := c.followers(leader)[0]
	follower, err := client.New(client.Config{Endpoints: []string{f.thriftAddr}, DisableDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follower.Close() })
	const (
		served    = `cubekv_requests_total{method="keep_alive",outcome="ok"}`
		forwarded = `cubekv_requests_total{method="internal.keep_alive",outcome="ok"}`
	)
	fBefore, lBefore := scrape(t, f)[served], scrape(t, leader)[forwarded]
	s := time.Now()
	if _, err := follower.KeepAlive(ctxTimeout(t, 5*time.Second), id); err != nil {
		t.Fatalf("keep-alive through a follower: %v", err)
	}
	sent, acked = s, time.Now()
	if n := scrape(t, f)[served] - fBefore; n < 1 {
		t.Fatalf("follower %s answered %v keep-alives, want at least 1", f.id, n)
	}
	if n := scrape(t, leader)[forwarded] - lBefore; n < 1 {
		t.Fatalf("leader %s answered %v forwarded keep-alives, want at least 1", leader.id, n)
	}

	gone := staleWatch(t, c.procs, "ttl/key", acked.Add(leaseTTL+2*time.Second))
	for _, p := range c.procs {
		at, ok := gone[p.id]
		switch {
		case !ok:
			t.Errorf("%s: key still there %v after its last keep-alive was acknowledged", p.id, leaseTTL+2*time.Second)
		case at.Before(sent.Add(leaseTTL)):
			t.Errorf("%s: key gone %v after its last keep-alive was sent, before its TTL %v", p.id, at.Sub(sent), leaseTTL)
		case at.After(acked.Add(leaseTTL + time.Second)):
			t.Errorf("%s: key gone only %v after its last keep-alive was acknowledged, more than TTL + 1s", p.id, at.Sub(acked))
		default:
			t.Logf("%s: key gone %v after the last keep-alive was sent", p.id, at.Sub(sent).Round(time.Millisecond))
		}
	}
	if _, err := cl.KeepAlive(ctxTimeout(t, 5*time.Second), id); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of the expired lease: %v", err)
	}
}

func TestLease_LeaderKillNeverShortensLease(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	cl := mustClient(t, endpoints(c)...)
	put, err := cl.Put(ctxTimeout(t, 10*time.Second), []byte("ttl/kill"), []byte("v"), client.WithTTL(leaseTTL))
	if err != nil {
		t.Fatal(err)
	}
	sent, _ := mustKeepAlive(t, cl, put.GetLeaseID(), leaseTTL)
	// Halfway through the TTL of the last keep-alive, the leader dies.
	time.Sleep(time.Until(sent.Add(leaseTTL / 2))) // the point in the TTL the fault is injected at
	leader.kill()
	killed := time.Now()
	survivors := c.followers(leader)
	newLeader := c.waitLeader(20*time.Second, leader)
	elected := time.Now()
	t.Logf("leader %s killed %v after the last keep-alive; %s leads %v later",
		leader.id, killed.Sub(sent).Round(time.Millisecond), newLeader.id, elected.Sub(killed).Round(time.Millisecond))

	gone := staleWatch(t, survivors, "ttl/kill", elected.Add(leaseTTL+3*time.Second))
	for _, p := range survivors {
		at, ok := gone[p.id]
		switch {
		case !ok:
			t.Errorf("%s: key still there %v after the new leader was seen", p.id, leaseTTL+3*time.Second)
		case at.Before(killed.Add(leaseTTL)):
			// The new leader was elected after the kill and counts a
			// full TTL from then: the key outlives the old countdown.
			t.Errorf("%s: key gone %v after the kill, before a full TTL of the new leader", p.id, at.Sub(killed))
		case at.After(elected.Add(leaseTTL + time.Second)):
			t.Errorf("%s: key gone only %v after the new leader was seen", p.id, at.Sub(elected))
		default:
			t.Logf("%s: key gone %v after its last keep-alive was sent (TTL %v), %v after the new leader was seen",
				p.id, at.Sub(sent).Round(time.Millisecond), leaseTTL, at.Sub(elected).Round(time.Millisecond))
		}
	}
}

func TestLease_RevokeIsAtomic(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLeader(10 * time.Second)
	cl := mustClient(t, endpoints(c)...)
	ctx := ctxTimeout(t, 60*time.Second)
	const n = 200
	g, err := cl.Grant(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 50 {
		var ops []*kv.Op
		for j := i; j < i+50; j++ {
			ops = append(ops, &kv.Op{Type: kv.OpType_PUT, Key: []byte(fmt.Sprintf("rv/%03d", j)), Value: []byte("v"), LeaseID: &g.LeaseID})
		}
		if _, err := cl.Txn(ctx, &kv.TxnRequest{Success: ops}); err != nil {
			t.Fatal(err)
		}
	}
	info, err := cl.LeaseInfo(ctx, g.LeaseID, false)
	if err != nil || info.KeyCount != n {
		t.Fatalf("lease info: %v %v", info, err)
	}
	scan := func(conn *transport.Conn) (*kv.ScanResponse, error) {
		return kvCall(t, conn, 2*time.Second, func(ctx context.Context, c *kv.KVClient) (*kv.ScanResponse, error) {
			return c.Scan(ctx, &kv.ScanRequest{Prefix: []byte("rv/"), KeysOnly: boolPtr(true), Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)})
		})
	}
	// Once every node has applied all the puts, every node scans the
	// prefix while the lease is revoked: each scan sees all n keys or none.
	for _, p := range c.procs {
		conn := rawConn(t, p.thriftAddr)
		eventually(t, 10*time.Second, p.id+" applying the puts", func() (bool, string) {
			r, err := scan(conn)
			if err != nil {
				return false, err.Error()
			}
			return len(r.Entries) == n, fmt.Sprintf("%d keys", len(r.Entries))
		})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[string]map[int]int{} // node -> keys seen -> scans; the outer map is written only here
	for _, p := range c.procs {
		seen[p.id] = map[int]int{}
	}
	for _, p := range c.procs {
		conn := rawConn(t, p.thriftAddr)
		wg.Add(1)
		go func(p *proc, conn *transport.Conn) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := scan(conn)
				if err != nil {
					continue
				}
				mu.Lock()
				seen[p.id][len(r.Entries)]++
				mu.Unlock()
			}
		}(p, conn)
	}
	if _, err := cl.Revoke(ctx, g.LeaseID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "every node seeing the keys gone", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for id, m := range seen {
			if m[0] == 0 {
				return false, id + " still sees keys"
			}
		}
		return true, ""
	})
	close(stop)
	wg.Wait()
	for id, m := range seen {
		for count, scans := range m {
			if count != 0 && count != n {
				t.Errorf("%s: %d scans saw %d of the %d keys", id, scans, count, n)
			}
		}
		t.Logf("%s: scans by keys seen: %v", id, m)
	}
}

func boolPtr(b bool) *bool { return &b }

// TestLease_SurvivesKillNineThroughSnapshot: a lease and its keys, all
// written before a snapshot, are restored from it after kill -9, counted
// down again from the full TTL, and revoked with their keys.
func TestLease_SurvivesKillNineThroughSnapshot(t *testing.T) {
	p := newProc(t, "n1", "--snapshot-threshold", "50", "--snapshot-interval", "100ms", "--trailing-logs", "10")
	p.start()
	cl := mustClient(t, p.thriftAddr)
	ctx := ctxTimeout(t, 2*time.Minute)
	g, err := cl.Grant(ctx, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	var last int64
	for i := 0; i < n; i++ {
		r, err := cl.Put(ctx, []byte(fmt.Sprintf("snap/%03d", i)), []byte("v"), client.WithLease(g.LeaseID))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Index
	}
	// Unleased writes push the log past the snapshot threshold.
	filler := 0
	eventually(t, 30*time.Second, "a snapshot holding the lease's keys", func() (bool, string) {
		idx := mustStatus(t, cl, p.thriftAddr).SnapshotIndex
		if idx >= last {
			return true, ""
		}
		mustPutSeq(t, ctx, cl, 20, fmt.Sprintf("filler/%d/%%d", filler), "f%d")
		filler++
		return false, fmt.Sprintf("snapshot at %d, last lease write at %d", idx, last)
	})
	p.kill()
	p.start()
	info, err := cl.LeaseInfo(ctxTimeout(t, 30*time.Second), g.LeaseID, true)
	if err != nil {
		t.Fatalf("lease info after restart: %v", err)
	}
	if info.KeyCount != n || len(info.Keys) != n || string(info.Keys[0]) != "snap/000" || info.TTLMs != 20000 {
		t.Fatalf("lease after restart: %d keys (%d listed), ttl %d", info.KeyCount, len(info.Keys), info.TTLMs)
	}
	if info.RemainingMs < 15000 {
		t.Fatalf("remaining %d ms after restart: the countdown did not restart at the full TTL", info.RemainingMs)
	}
	r, err := cl.Get(ctx, []byte("snap/042"))
	if err != nil || !r.Found || r.Entry.GetLeaseID() != g.LeaseID {
		t.Fatalf("get after restart: %v %v", r, err)
	}
	if _, err := cl.Revoke(ctx, g.LeaseID); err != nil {
		t.Fatal(err)
	}
	sc, err := cl.Scan(ctx, &kv.ScanRequest{Prefix: []byte("snap/")})
	if err != nil || len(sc.Entries) != 0 {
		t.Fatalf("after revoke: %d keys left, %v", len(sc.Entries), err)
	}
}
