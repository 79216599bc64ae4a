package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// mustPut writes key=value through c.
func mustPut(t *testing.T, c *client.Client, key string) {
	t.Helper()
	if _, err := c.Put(testCtx(t), []byte(key), []byte("v-"+key)); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestClient_DiscoversLeaderFromOneSeed(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	cl.SetLeader("n2")
	n1, n2, n3 := cl.Server("n1"), cl.Server("n2"), cl.Server("n3")
	// One seed, a follower: the client must learn the leader from the topology, not a redirect.
	c := mustNewClient(t, []string{n3.Addr}, nil)
	if got := c.Leader(); got != "" {
		t.Fatalf("Leader before any request = %q, want empty (New does no I/O)", got)
	}
	if n := n3.TopologyCalls(); n != 0 {
		t.Fatalf("New made %d topology requests, want 0", n)
	}

	const writes = 20
	for i := range writes {
		mustPut(t, c, fmt.Sprintf("k%d", i))
	}
	if n := countMethod(n2.Calls(), "put"); n != writes {
		t.Fatalf("leader n2 saw %d puts, want %d", n, writes)
	}
	for _, s := range []*clienttest.Server{n1, n3} {
		if n := countMethod(s.Calls(), "put"); n != 0 {
			t.Fatalf("follower %s saw %d puts, want 0: writes must go straight to the leader", s.NodeID(), n)
		}
	}
	if got := c.Leader(); got != n2.Addr {
		t.Fatalf("Leader() = %q, want n2 at %s", got, n2.Addr)
	}
	// One refresh served every write: the view is cached.
	if n := n1.TopologyCalls() + n2.TopologyCalls() + n3.TopologyCalls(); n != 1 {
		t.Fatalf("%d topology requests for %d writes, want 1", n, writes)
	}

	topo, err := c.Topology(testCtx(t))
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	if len(topo.Members) != 3 || topo.LeaderID != "n2" {
		t.Fatalf("topology %v, want 3 members led by n2", topo)
	}
	for _, m := range topo.Members {
		if m.ThriftAddr != cl.Server(m.NodeID).Addr {
			t.Fatalf("member %s thrift address %q, want %s", m.NodeID, m.ThriftAddr, cl.Server(m.NodeID).Addr)
		}
	}
}

func TestClient_FollowsLeaderChange(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := cl.Server("n1"), cl.Server("n2"), cl.Server("n3")
	c := mustNewClient(t, []string{n3.Addr}, func(cfg *client.Config) { cfg.Backoff, cfg.MaxBackoff = time.Hour, time.Hour })

	mustPut(t, c, "before")
	if n := countMethod(n1.Calls(), "put"); n != 1 {
		t.Fatalf("leader n1 saw %d puts, want 1", n)
	}

	cl.SetLeader("n2")
	// The cached view still names n1: its NotLeader redirects at once (no one-hour backoff) to n2.
	mustPut(t, c, "redirected")
	if v, ok := n2.Value("redirected"); !ok || string(v) != "v-redirected" {
		t.Fatalf("new leader n2 has redirected=%q (exists %v)", v, ok)
	}
	old, nw := writeIDs(n1.Calls(), "put"), writeIDs(n2.Calls(), "put")
	if len(old) != 2 || len(nw) != 1 || old[1] != nw[0] {
		t.Fatalf("n1 saw put ids %v, n2 %v: want the redirected write once at each, same id", old, nw)
	}
	if got := c.Leader(); got != n2.Addr {
		t.Fatalf("Leader() after the redirect = %q, want n2 at %s", got, n2.Addr)
	}
	// The redirect also refreshed the view.
	testutil.WaitFor(t, 5*time.Second, "two topology calls", func() bool { return n1.TopologyCalls()+n2.TopologyCalls()+n3.TopologyCalls() >= 2 })

	for i := range 10 {
		mustPut(t, c, fmt.Sprintf("after%d", i))
	}
	if n := countMethod(n1.Calls(), "put"); n != 2 {
		t.Fatalf("old leader n1 saw %d puts, want still 2", n)
	}
	if n := countMethod(n2.Calls(), "put"); n != 11 {
		t.Fatalf("new leader n2 saw %d puts, want 11", n)
	}
	if n := countMethod(n3.Calls(), "put"); n != 0 {
		t.Fatalf("follower n3 saw %d puts, want 0", n)
	}
}

func TestClient_RefreshesOldTopology(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2")
	n1, n2 := cl.Server("n1"), cl.Server("n2")
	c := mustNewClient(t, []string{n2.Addr}, func(cfg *client.Config) {
		cfg.TopologyMaxAge = 50 * time.Millisecond
		cfg.TopologyRefreshInterval = 10 * time.Millisecond
	})
	mustPut(t, c, "a")
	if c.Leader() != n1.Addr {
		t.Fatalf("Leader() = %q, want n1 at %s", c.Leader(), n1.Addr)
	}

	// The topology moves on while the old leader still accepts writes: no request fails, so only the
	// age of the view can make the client ask again.
	cl.SetLeader("n2")
	n1.Lead()
	testutil.WaitFor(t, 5*time.Second, "the client to follow the new leader n2", func() bool {
		if _, err := c.Get(testCtx(t), []byte("a"), client.WithConsistency(kv.Consistency_STALE)); err != nil {
			t.Fatalf("get: %v", err)
		}
		return c.Leader() == n2.Addr
	})
	mustPut(t, c, "b")
	if _, ok := n2.Value("b"); !ok {
		t.Fatal("write after the refresh did not go to the new leader n2")
	}
}

func TestClient_StaleReadsGoToTheNodeAsked(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	n2 := cl.Server("n2")
	c := mustNewClient(t, []string{n2.Addr}, nil)
	ctx := testCtx(t)

	const reads = 12
	for range reads {
		resp, err := c.Get(ctx, []byte("k"), client.WithConsistency(kv.Consistency_STALE))
		if err != nil {
			t.Fatalf("stale get: %v", err)
		}
		if resp.Info.NodeID != "n2" {
			t.Fatalf("stale read served by %s, want n2, the endpoint asked", resp.Info.NodeID)
		}
	}
	if _, err := c.Scan(ctx, &kv.ScanRequest{Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)}); err != nil {
		t.Fatalf("stale scan: %v", err)
	}
	for _, s := range cl.Servers {
		want := 0
		if s == n2 {
			want = reads
		}
		if n := countMethod(s.Calls(), "get"); n != want {
			t.Fatalf("%s served %d of %d stale reads, want %d", s.NodeID(), n, reads, want)
		}
		if n := countMethod(s.Calls(), "scan"); n != want/reads {
			t.Fatalf("%s served %d stale scans, want %d", s.NodeID(), n, want/reads)
		}
	}

	// When the node asked cannot answer, another member does.
	n2.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if c.Method == "get" {
			return &kv.Unavailable{Reason: "shutting down"}
		}
		return nil
	})
	resp, err := c.Get(ctx, []byte("k"), client.WithConsistency(kv.Consistency_STALE))
	if err != nil {
		t.Fatalf("stale get with the endpoint unavailable: %v", err)
	}
	if resp.Info.NodeID == "n2" {
		t.Fatalf("stale read served by n2, which refused it")
	}
}

func TestClient_StaleReadsSpreadOverAliveMembersWhenAsked(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	dead := testutil.DeadAddr(t)
	cl.Update(func(topo *kv.Topology) {
		topo.Members = append(topo.Members,
			// Never seen in gossip: no Thrift address, must be skipped.
			&kv.Member{NodeID: "n4", RaftAddr: "raft-n4:9091", Suffrage: kv.SuffragePtr(kv.Suffrage_VOTER), GossipState: kv.GossipState_UNKNOWN},
			// Gossip says dead: never chosen while others are alive.
			&kv.Member{NodeID: "n5", ThriftAddr: dead, RaftAddr: "raft-n5:9091", Suffrage: kv.SuffragePtr(kv.Suffrage_VOTER), GossipState: kv.GossipState_DEAD},
		)
	})
	c := mustNewClient(t, []string{cl.Server("n2").Addr}, func(cfg *client.Config) {
		cfg.MaxRetries = -1
		cfg.SpreadStaleReads = true
	})
	ctx := testCtx(t)

	const reads = 30
	for range reads {
		if _, err := c.Get(ctx, []byte("k"), client.WithConsistency(kv.Consistency_STALE)); err != nil {
			t.Fatalf("stale get: %v", err)
		}
	}
	for _, s := range cl.Servers {
		if n := countMethod(s.Calls(), "get"); n != reads/3 {
			t.Fatalf("%s served %d of %d stale reads, want %d (round-robin over the 3 alive members)", s.NodeID(), n, reads, reads/3)
		}
	}
	// Stale scans are spread too.
	for range 3 {
		if _, err := c.Scan(ctx, &kv.ScanRequest{Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)}); err != nil {
			t.Fatalf("stale scan: %v", err)
		}
	}
	for _, s := range cl.Servers {
		if n := countMethod(s.Calls(), "scan"); n != 1 {
			t.Fatalf("%s served %d of 3 stale scans, want 1", s.NodeID(), n)
		}
	}

	// Linearizable reads go to the leader by default.
	for range 6 {
		if _, err := c.Get(ctx, []byte("k")); err != nil {
			t.Fatalf("linearizable get: %v", err)
		}
	}
	if n := countMethod(cl.Server("n1").Calls(), "get"); n != reads/3+6 {
		t.Fatalf("leader n1 served %d gets, want %d", n, reads/3+6)
	}

	// ... and over every alive member when asked to.
	spread := mustNewClient(t, []string{cl.Server("n3").Addr}, func(cfg *client.Config) { cfg.SpreadLinearizableReads = true })
	before := make(map[string]int)
	for _, s := range cl.Servers {
		before[s.NodeID()] = countMethod(s.Calls(), "get")
	}
	for range 6 {
		if _, err := spread.Get(ctx, []byte("k")); err != nil {
			t.Fatalf("spread linearizable get: %v", err)
		}
	}
	for _, s := range cl.Servers {
		if n := countMethod(s.Calls(), "get") - before[s.NodeID()]; n != 2 {
			t.Fatalf("%s served %d of 6 spread linearizable reads, want 2", s.NodeID(), n)
		}
	}
}

func TestClient_TopologyRefreshIsRateLimited(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	var inFlight, maxInFlight, topoCalls atomic.Int32
	var gets atomic.Int32
	for _, s := range cl.Servers {
		s.SetTopologyHook(func(ctx context.Context, _ clienttest.Call) error {
			topoCalls.Add(1)
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for {
				m := maxInFlight.Load()
				if n <= m || maxInFlight.CompareAndSwap(m, n) {
					break
				}
			}
			// A slow answer, so that failures arrive while a refresh is in flight.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
			}
			return nil
		})
		// Every read fails, and every failure asks for a refresh.
		s.SetHook(func(ctx context.Context, c clienttest.Call) error {
			if c.Method == "get" {
				gets.Add(1)
				return &kv.Unavailable{Reason: "no quorum"}
			}
			return nil
		})
	}
	const interval = 100 * time.Millisecond
	c := mustNewClient(t, []string{cl.Server("n1").Addr}, func(cfg *client.Config) {
		cfg.TopologyRefreshInterval = interval
		cfg.MaxRetries = 3
	})

	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < 600*time.Millisecond {
				_, err := c.Get(testCtx(t), []byte("k"), client.WithConsistency(kv.Consistency_STALE))
				if !errors.Is(err, client.ErrUnavailable) {
					t.Errorf("get: got %v, want ErrUnavailable", err)
					return
				}
			}
		})
	}
	wg.Wait()
	// No refresh starts after Close, so every one counted started within elapsed.
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	elapsed := time.Since(start)
	testutil.WaitFor(t, 5*time.Second, "no request in flight", func() bool { return inFlight.Load() == 0 })

	calls, failures := int(topoCalls.Load()), int(gets.Load())
	limit := int(elapsed/interval) + 1
	t.Logf("%d failed reads in %v caused %d topology requests (limit %d)", failures, elapsed.Round(time.Millisecond), calls, limit)
	if calls > limit {
		t.Fatalf("%d topology requests in %v, want at most %d (one per %v)", calls, elapsed, limit, interval)
	}
	if calls < 2 {
		t.Fatalf("%d topology requests: failures must trigger refreshes", calls)
	}
	if failures < 4*calls {
		t.Fatalf("only %d failed reads for %d refreshes: the test did not exercise the limit", failures, calls)
	}
	if m := maxInFlight.Load(); m != 1 {
		t.Fatalf("%d topology requests in flight at once, want 1", m)
	}
}

func TestClient_DisableDiscovery(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2")
	n1, n2 := cl.Server("n1"), cl.Server("n2")
	n2.Lead() // n2 stands for a proxy: it serves writes although the topology names n1 leader
	c := mustNewClient(t, []string{n2.Addr}, func(cfg *client.Config) { cfg.DisableDiscovery = true })
	ctx := testCtx(t)

	for i := range 5 {
		mustPut(t, c, fmt.Sprintf("k%d", i))
		if _, err := c.Get(ctx, []byte("k0"), client.WithConsistency(kv.Consistency_STALE)); err != nil {
			t.Fatalf("get: %v", err)
		}
	}
	if n := countMethod(n2.Calls(), "put") + countMethod(n2.Calls(), "get"); n != 10 {
		t.Fatalf("endpoint n2 saw %d requests, want all 10", n)
	}
	if n := len(n1.Calls()); n != 0 {
		t.Fatalf("n1, not an endpoint, saw %d requests", n)
	}
	if n := n1.TopologyCalls() + n2.TopologyCalls(); n != 0 {
		t.Fatalf("%d topology requests with discovery disabled", n)
	}
	if got := c.Leader(); got != "" {
		t.Fatalf("Leader() = %q without discovery or redirects, want empty", got)
	}
}

func TestClient_WithoutTopologyFallsBackToEndpoints(t *testing.T) {
	// A node that does not answer topology (the fake's default) leaves the client on its endpoints.
	srv := clienttest.NewServer(t, "n1")
	c := mustNewClient(t, []string{testutil.DeadAddr(t), srv.Addr}, nil)
	mustPut(t, c, "k")
	if n := srv.Applies("k"); n != 1 {
		t.Fatalf("k applied %d times, want 1", n)
	}
	if srv.TopologyCalls() == 0 {
		t.Fatal("the client never asked for the topology")
	}

	// A view whose members are all gone: requests fall back to the seeds.
	seed := clienttest.NewServer(t, "seed")
	gone := testutil.DeadAddr(t)
	seed.SetTopology(&kv.Topology{LeaderID: "old", Term: 3, Members: []*kv.Member{
		{NodeID: "old", ThriftAddr: gone, Suffrage: kv.SuffragePtr(kv.Suffrage_VOTER), Leader: true, GossipState: kv.GossipState_ALIVE},
	}})
	c2 := mustNewClient(t, []string{seed.Addr}, nil)
	mustPut(t, c2, "k")
	if n := seed.Applies("k"); n != 1 {
		t.Fatalf("seed applied k %d times, want 1", n)
	}
}

func TestClient_ClusterChangesGoToLeader(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := cl.Server("n1"), cl.Server("n2"), cl.Server("n3")
	c := mustNewClient(t, []string{n3.Addr}, func(cfg *client.Config) { cfg.Backoff, cfg.MaxBackoff = time.Hour, time.Hour })
	ctx := testCtx(t)
	mustPut(t, c, "learn") // the client now believes n1 leads

	cl.SetLeader("n2")
	resp, err := c.AddMember(ctx, &kv.AddMemberRequest{NodeID: "n4", RaftAddr: "10.0.0.4:9091"})
	if err != nil {
		t.Fatalf("add member: %v", err)
	}
	if resp.GetSuffrage() != kv.Suffrage_VOTER {
		t.Fatalf("add member: suffrage %v, want VOTER", resp.GetSuffrage())
	}
	if a, b := countMethod(n1.Calls(), "add_member"), countMethod(n2.Calls(), "add_member"); a != 1 || b != 1 {
		t.Fatalf("add_member seen %d times at the old leader, %d at the new, want 1 and 1 (a redirect)", a, b)
	}

	resp, err = c.AddMember(ctx, &kv.AddMemberRequest{NodeID: "n5", RaftAddr: "10.0.0.5:9091", Nonvoter: new(true)})
	if err != nil || resp.GetSuffrage() != kv.Suffrage_NONVOTER {
		t.Fatalf("add nonvoter: %v, %v", resp, err)
	}
	if resp, err = c.PromoteMember(ctx, &kv.PromoteMemberRequest{NodeID: "n5"}); err != nil || resp.GetSuffrage() != kv.Suffrage_VOTER {
		t.Fatalf("promote: %v, %v", resp, err)
	}
	if _, err := c.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: "n4"}); err != nil {
		t.Fatalf("remove: %v", err)
	}
	topo, err := c.Topology(ctx)
	if err != nil {
		t.Fatalf("topology: %v", err)
	}
	var ids []string
	for _, m := range topo.Members {
		ids = append(ids, fmt.Sprintf("%s:%v", m.NodeID, m.GetSuffrage()))
	}
	if fmt.Sprint(ids) != "[n1:VOTER n2:VOTER n3:VOTER n5:VOTER]" {
		t.Fatalf("members after the changes: %v", ids)
	}
	if n := countMethod(n3.Calls(), "add_member") + countMethod(n3.Calls(), "remove_member"); n != 0 {
		t.Fatalf("follower n3 saw %d cluster changes, want 0", n)
	}

	// A refused change is not retried.
	_, err = c.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: "nope"})
	if !errors.Is(err, client.ErrInvalidArgument) {
		t.Fatalf("remove unknown member: got %v, want ErrInvalidArgument", err)
	}
	if n := countMethod(n2.Calls(), "remove_member"); n != 2 {
		t.Fatalf("leader saw %d remove_member calls, want 2 (the refused one once)", n)
	}

	tr, err := c.TransferLeadership(ctx, "n3")
	if err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if tr.LeaderID != "n3" {
		t.Fatalf("transfer: new leader %s, want n3", tr.LeaderID)
	}
	if got := c.Leader(); got != n3.Addr {
		t.Fatalf("Leader() after the transfer = %q, want n3 at %s", got, n3.Addr)
	}
	mustPut(t, c, "after-transfer")
	if _, ok := n3.Value("after-transfer"); !ok {
		t.Fatal("write after the transfer did not go to n3")
	}
	if tr, err = c.TransferLeadership(ctx, ""); err != nil || tr.LeaderID == "n3" {
		t.Fatalf("transfer to any voter: %v, %v: want a leader other than n3", tr, err)
	}
}

func TestClient_ClusterChangeOutlastsRequestTimeout(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1")
	n1 := cl.Server("n1")
	const catchup = 400 * time.Millisecond
	n1.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if c.Method != "add_member" {
			return nil
		}
		select { // catching up takes longer than an ordinary request may
		case <-time.After(catchup):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	c := mustNewClient(t, []string{n1.Addr}, func(cfg *client.Config) { cfg.Dial.RequestTimeout = 100 * time.Millisecond })

	if _, err := c.AddMember(testCtx(t), &kv.AddMemberRequest{NodeID: "n2", RaftAddr: "10.0.0.2:9091"}); err != nil {
		t.Fatalf("add member taking %v with a %v request timeout: %v", catchup, 100*time.Millisecond, err)
	}

	// The context still bounds it, and a change that may have been made is not repeated.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := c.AddMember(ctx, &kv.AddMemberRequest{NodeID: "n3", RaftAddr: "10.0.0.3:9091"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("add member past the deadline: got %v, want context.DeadlineExceeded", err)
	}
	if n := countMethod(n1.Calls(), "add_member"); n != 2 {
		t.Fatalf("leader saw %d add_member calls, want 2 (no retry of the timed-out one)", n)
	}

	// A server Timeout (the member did not catch up) is reported, not retried.
	n1.SetHook(func(ctx context.Context, c clienttest.Call) error {
		return &kv.Timeout{Reason: "n4 did not catch up; it stays a nonvoter"}
	})
	_, err = c.AddMember(testCtx(t), &kv.AddMemberRequest{NodeID: "n4", RaftAddr: "10.0.0.4:9091"})
	if !errors.Is(err, client.ErrTimeout) {
		t.Fatalf("add member: got %v, want ErrTimeout", err)
	}
	if n := countMethod(n1.Calls(), "add_member"); n != 3 {
		t.Fatalf("leader saw %d add_member calls, want 3", n)
	}
}
