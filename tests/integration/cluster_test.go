package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// TestCluster_FollowerWriteReadFromThird writes through one follower (which
// forwards to the leader) and reads linearizably from the other follower,
// which serves the read itself through the leader's read index.
func TestCluster_FollowerWriteReadFromThird(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	fs := c.followers(leader)
	writer, reader := fs[0], fs[1]

	wc := rawConn(t, writer.thriftAddr)
	put, err := kvCall(t, wc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
		return k.Put(ctx, &kv.PutRequest{Key: []byte("via-follower"), Value: []byte("v1")})
	})
	if err != nil {
		t.Fatalf("put via follower %s: %v", writer.id, err)
	}
	if forwarded(t, writer) < 1 {
		t.Fatalf("follower %s did not forward the write", writer.id)
	}
	rc := rawConn(t, reader.thriftAddr)
	get, err := kvCall(t, rc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
		return k.Get(ctx, &kv.GetRequest{Key: []byte("via-follower")})
	})
	if err != nil {
		t.Fatalf("linearizable get from %s: %v", reader.id, err)
	}
	if !get.Found || string(get.Entry.Value) != "v1" || get.Entry.ModIndex != put.Index {
		t.Fatalf("get = %+v, want v1 at %d", get, put.Index)
	}
	if get.Info.NodeID != reader.id || get.Info.Consistency != kv.Consistency_LINEARIZABLE {
		t.Fatalf("read served by %s at %v, want %s linearizable", get.Info.NodeID, get.Info.Consistency, reader.id)
	}
}

// TestCluster_KillLeaderDuringWrites kill -9s the leader during a stream of
// writes: a new leader takes over within a few seconds and every
// acknowledged write is readable afterwards, with each log store.
func TestCluster_KillLeaderDuringWrites(t *testing.T) {
	for _, store := range []string{"bolt", "wal"} {
		t.Run(store, func(t *testing.T) { testKillLeaderDuringWrites(t, store) })
	}
}

func testKillLeaderDuringWrites(t *testing.T, store string) {
	c := startCluster(t, 3, "--log-store", store)
	leader := c.waitLeader(10 * time.Second)
	var endpoints []string
	for _, p := range c.procs {
		endpoints = append(endpoints, p.thriftAddr)
	}
	cl := mustClient(t, endpoints...)
	ctx := ctxTimeout(t, 2*time.Minute)

	var mu sync.Mutex
	acked := map[string]int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%06d", w, i)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				r, err := cl.Put(wctx, []byte(key), []byte(key))
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = r.Index
					mu.Unlock()
				}
			}
		}(w)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	eventually(t, 20*time.Second, "300 writes acknowledged before the kill", func() (bool, string) {
		return count() >= 300, fmt.Sprintf("%d acknowledged", count())
	})
	before := count()
	killed := time.Now()
	leader.kill()
	next := c.waitLeader(15*time.Second, leader)
	elected := time.Since(killed)
	eventually(t, 20*time.Second, "writes resumed after failover", func() (bool, string) {
		return count() >= before+300, fmt.Sprintf("%d acknowledged, %d before the kill", count(), before)
	})
	resumed := time.Since(killed)
	close(stop)
	wg.Wait()
	t.Logf("leader %s killed after %d acknowledged writes; %s leader after %v; writes flowing again by %v; %d acknowledged in all",
		leader.id, before, next.id, elected.Round(time.Millisecond), resumed.Round(time.Millisecond), count())

	reader := mustClient(t, c.followers(leader)[0].thriftAddr, c.followers(leader)[1].thriftAddr)
	for key, idx := range acked {
		r, err := reader.Get(ctx, []byte(key))
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if !r.Found || string(r.Entry.Value) != key || r.Entry.ModIndex != idx {
			t.Fatalf("acknowledged write %s at %d lost: %+v", key, idx, r.Entry)
		}
	}
}

// TestCluster_ReplaceNodeCatchesUpBySnapshot removes a node, adds a fresh one
// that must catch up through a snapshot install, sees it promoted and reads
// linearizably from it.
func TestCluster_ReplaceNodeCatchesUpBySnapshot(t *testing.T) {
	tuning := []string{"--snapshot-threshold", "256", "--trailing-logs", "64", "--snapshot-interval", "100ms"}
	c := startCluster(t, 3, tuning...)
	leader := c.waitLeader(10 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	ctx := ctxTimeout(t, 3*time.Minute)
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := cl.Put(ctx, []byte(fmt.Sprintf("k%05d", i)), []byte(fmt.Sprintf("v%d", i))); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
		}
	}
	write(0, 1500)

	gone := c.followers(leader)[1]
	if _, err := clusterCall(t, leader.thriftAddr, 30*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return k.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: gone.id})
	}); err != nil {
		t.Fatalf("remove %s: %v", gone.id, err)
	}
	gone.kill()
	write(1500, 2500)

	var join []string
	for _, p := range c.procs {
		if p != gone {
			join = append(join, p.gossipAddr)
		}
	}
	fresh := newProc(t, "n4", append([]string{"--bootstrap", "false", "--join", strings.Join(join, ","), "--request-timeout", "3s"}, tuning...)...)
	fresh.launch()
	c.procs = append(c.procs, fresh)

	start := time.Now()
	res, err := clusterCall(t, leader.thriftAddr, 90*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return k.AddMember(ctx, &kv.AddMemberRequest{NodeID: fresh.id, RaftAddr: fresh.raftAddr})
	})
	if err != nil {
		t.Fatalf("add %s: %v", fresh.id, err)
	}
	if res.GetSuffrage() != kv.Suffrage_VOTER {
		t.Fatalf("%s added as %v, want promoted to voter", fresh.id, res.GetSuffrage())
	}
	t.Logf("%s caught up and was promoted in %v", fresh.id, time.Since(start).Round(time.Millisecond))
	if !fresh.logContains("Installed remote snapshot") {
		t.Fatalf("%s caught up without installing a snapshot", fresh.id)
	}
	// The new node learns its promotion when the configuration entry
	// reaches it; poll its own view until it does.
	eventually(t, 15*time.Second, fresh.id+" sees the new configuration", func() (bool, string) {
		topo, err := clusterCall(t, fresh.thriftAddr, 10*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.Topology, error) {
			return k.Topology(ctx)
		})
		if err != nil {
			t.Fatalf("topology: %v", err)
		}
		for _, m := range topo.Members {
			if (m.NodeID == gone.id && m.Suffrage != nil) || (m.NodeID == fresh.id && m.GetSuffrage() != kv.Suffrage_VOTER) {
				return false, fmt.Sprintf("%+v", topo.Members)
			}
		}
		return true, ""
	})
	rc := rawConn(t, fresh.thriftAddr)
	for i := 0; i < 2500; i += 97 {
		key := fmt.Sprintf("k%05d", i)
		r, err := kvCall(t, rc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
			return k.Get(ctx, &kv.GetRequest{Key: []byte(key)})
		})
		if err != nil || !r.Found || string(r.Entry.Value) != fmt.Sprintf("v%d", i) || r.Info.NodeID != fresh.id {
			t.Fatalf("linearizable get %s from %s: %+v, %v", key, fresh.id, r, err)
		}
	}
}

// TestCluster_LeadershipTransferToNamedNode hands leadership to a chosen
// follower.
func TestCluster_LeadershipTransferToNamedNode(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	target := c.followers(leader)[1]
	// Asked of a follower, the call is refused with the leader's address.
	_, err := clusterCall(t, target.thriftAddr, 10*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.TransferLeadershipResponse, error) {
		return k.TransferLeadership(ctx, &kv.TransferLeadershipRequest{NodeID: &target.id})
	})
	var nl *kv.NotLeader
	if !errors.As(err, &nl) || nl.GetLeaderID() != leader.id || nl.GetLeaderAddr() != leader.thriftAddr {
		t.Fatalf("transfer asked of a follower: %v, want NotLeader naming %s at %s", err, leader.id, leader.thriftAddr)
	}
	res, err := clusterCall(t, leader.thriftAddr, 20*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.TransferLeadershipResponse, error) {
		return k.TransferLeadership(ctx, &kv.TransferLeadershipRequest{NodeID: &target.id})
	})
	if err != nil || res.LeaderID != target.id {
		t.Fatalf("transfer to %s: %+v, %v", target.id, res, err)
	}
	if now := c.waitLeader(10 * time.Second); now != target {
		t.Fatalf("leader is %s, want %s", now.id, target.id)
	}
	// The new leader serves writes.
	if _, err := mustClient(t, target.thriftAddr).Put(ctxTimeout(t, 10*time.Second), []byte("after-transfer"), []byte("x")); err != nil {
		t.Fatalf("put after transfer: %v", err)
	}
}

// TestCluster_CASRetriedAfterLeaderChangeAppliedOnce sends a CAS with a
// request id, forces a leader change, changes the key back so that applying
// the CAS again would succeed, then retries the CAS with the same request id
// through a follower: the retry must answer the first outcome and leave the
// key alone.
func TestCluster_CASRetriedAfterLeaderChangeAppliedOnce(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	lc := rawConn(t, leader.thriftAddr)
	put := func(v string) *kv.PutResponse {
		r, err := kvCall(t, lc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
			return k.Put(ctx, &kv.PutRequest{Key: []byte("counter"), Value: []byte(v)})
		})
		if err != nil {
			t.Fatalf("put %s: %v", v, err)
		}
		return r
	}
	put("0")
	id := &kv.RequestID{ClientID: 0x5eed, Sequence: 1}
	cas := &kv.CASRequest{Key: []byte("counter"), ExpectedValue: []byte("0"), Value: []byte("1"), RequestID: id}
	first, err := kvCall(t, lc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.CASResponse, error) { return k.Cas(ctx, cas) })
	if err != nil || !first.Succeeded {
		t.Fatalf("first CAS: %+v, %v", first, err)
	}

	target := c.followers(leader)[0]
	if _, err := clusterCall(t, leader.thriftAddr, 20*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.TransferLeadershipResponse, error) {
		return k.TransferLeadership(ctx, &kv.TransferLeadershipRequest{NodeID: &target.id})
	}); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	newLeader := c.waitLeader(10*time.Second, leader)
	nc := rawConn(t, newLeader.thriftAddr)
	reset, err := kvCall(t, nc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
		return k.Put(ctx, &kv.PutRequest{Key: []byte("counter"), Value: []byte("0")})
	})
	if err != nil {
		t.Fatalf("reset: %v", err)
	}

	// Retry through a follower of the new leader: forwarded, deduplicated.
	via := c.followers(newLeader)[0]
	retry, err := kvCall(t, rawConn(t, via.thriftAddr), 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.CASResponse, error) {
		return k.Cas(ctx, cas)
	})
	if err != nil {
		t.Fatalf("retried CAS via %s: %v", via.id, err)
	}
	if !retry.Succeeded || retry.Index != first.Index {
		t.Fatalf("retry answered %+v, want the first outcome (succeeded at %d)", retry, first.Index)
	}
	get, err := kvCall(t, nc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
		return k.Get(ctx, &kv.GetRequest{Key: []byte("counter")})
	})
	if err != nil {
		t.Fatal(err)
	}
	if string(get.Entry.Value) != "0" || get.Entry.ModIndex != reset.Index {
		t.Fatalf("counter = %q at %d after the retry, want \"0\" at %d: the CAS was applied twice", get.Entry.Value, get.Entry.ModIndex, reset.Index)
	}
	// A new sequence on the same client id is applied normally.
	cas.RequestID = &kv.RequestID{ClientID: id.ClientID, Sequence: 2}
	again, err := kvCall(t, nc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.CASResponse, error) { return k.Cas(ctx, cas) })
	if err != nil || !again.Succeeded || again.Index <= reset.Index {
		t.Fatalf("CAS with the next sequence: %+v, %v", again, err)
	}
}

// TestCluster_IsolatedLeaderRefusesLinearizableReads stops both followers:
// the leader refuses LINEARIZABLE reads with Unavailable within its request
// timeout, while a STALE read answers and says how stale it may be.
func TestCluster_IsolatedLeaderRefusesLinearizableReads(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	lc := rawConn(t, leader.thriftAddr)
	if _, err := kvCall(t, lc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
		return k.Put(ctx, &kv.PutRequest{Key: []byte("k"), Value: []byte("v")})
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range c.followers(leader) {
		f.pause()
	}
	// Acknowledgements already received (buffered) when the followers
	// stopped can still confirm a read or two: they were sent before the
	// stop, and with both followers frozen no other leader can exist, so
	// such reads are correct. Refusals must start within a few seconds,
	// each within the 3 s request timeout, and once refused, nothing is
	// served again.
	var refusals, served int
	stopped := time.Now()
	deadline := stopped.Add(15 * time.Second)
	for refusals < 3 && time.Now().Before(deadline) {
		start := time.Now()
		_, err := kvCall(t, lc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
			return k.Get(ctx, &kv.GetRequest{Key: []byte("k")})
		})
		took := time.Since(start)
		if err == nil {
			served++
			if refusals > 0 {
				t.Fatalf("isolated leader served a linearizable read after refusing one")
			}
			if time.Since(stopped) > 5*time.Second {
				t.Fatalf("isolated leader still served linearizable reads %v after its followers stopped", time.Since(stopped))
			}
			continue
		}
		var un *kv.Unavailable
		if !errors.As(err, &un) {
			t.Fatalf("linearizable read: %T %v, want Unavailable", err, err)
		}
		if took > 4*time.Second {
			t.Fatalf("refusal took %v, want within the 3s request timeout", took)
		}
		refusals++
		t.Logf("linearizable read refused after %v: %s", took.Round(time.Millisecond), un.Reason)
	}
	t.Logf("%d reads served on acknowledgements received before the stop", served)
	if refusals < 3 {
		t.Fatalf("only %d refusals in 15s", refusals)
	}
	// STALE reads keep answering, and the staleness they report grows
	// with the time since the node last had a leader.
	var stale *kv.GetResponse
	eventually(t, 10*time.Second, "stale reads report a last contact of 1s or more", func() (bool, string) {
		var err error
		stale, err = kvCall(t, lc, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
			return k.Get(ctx, &kv.GetRequest{Key: []byte("k"), Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)})
		})
		if err != nil || !stale.Found || !bytes.Equal(stale.Entry.Value, []byte("v")) {
			t.Fatalf("stale read: %+v, %v", stale, err)
		}
		if stale.Info.Consistency != kv.Consistency_STALE || stale.Info.AppliedIndex < stale.Entry.ModIndex || stale.Info.LastContactMs < 0 {
			t.Fatalf("stale read info %+v: want STALE, applied >= %d, a last contact", stale.Info, stale.Entry.ModIndex)
		}
		return stale.Info.LastContactMs >= 1000, fmt.Sprintf("last contact %d ms ago", stale.Info.LastContactMs)
	})
	t.Logf("stale read answered: applied index %d, last leader contact %d ms ago", stale.Info.AppliedIndex, stale.Info.LastContactMs)
	for _, f := range c.followers(leader) {
		f.resume()
	}
	c.waitLeader(20 * time.Second)
	for _, p := range c.procs {
		p.waitReady(30 * time.Second)
	}
}
