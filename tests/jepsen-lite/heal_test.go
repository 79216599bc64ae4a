package jepsenlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// TestHeal_FollowerPartitionedPastGossipTimeouts cuts a follower off for
// longer than memberlist's dead-node timeouts: both sides declare the other
// dead and then forget it, after which memberlist alone would never probe
// it again. Once the network heals, every node must be ready (a read index
// from the leader, applied) within 10 s, and gossip must see all three
// alive again. Writes continue on the majority throughout, so the follower
// has entries to catch up on.
func TestHeal_FollowerPartitionedPastGossipTimeouts(t *testing.T) {
	requireNetns(t)
	b := mustBinaries(t)
	nw := newNetwork(t)
	c := startCluster(t, nw, t.TempDir(), clusterOpts{size: 3, bin: b.normal})
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				if b, err := os.ReadFile(n.logPath); err == nil {
					t.Logf("kvnode %s log:\n%s", n.id, tail(string(b), 60))
				}
			}
		}
	})
	ctx := context.Background()
	leader := c.mustWaitLeader(t, 10*time.Second)
	victim := c.followers(leader)[0]
	var rest []*kvnode
	for _, n := range c.nodes {
		if n != victim {
			rest = append(rest, n)
		}
	}

	rec := newRecorder()
	wl := newWorkload(defaultWorkload(), rec, "heal", c.endpoints(), baseSeed(t))
	defer wl.close()
	writer := wl.newClient([]string{leader.thriftAddr()}, 0, 5, pinned)
	wctx, stopWrites := context.WithCancel(ctx)
	writes := make(chan int, 1)
	go func() {
		n := 0
		for i := 0; wctx.Err() == nil; i++ {
			octx, cancel := context.WithTimeout(wctx, 2*time.Second)
			if _, err := writer.Put(octx, []byte(fmt.Sprintf("heal/%d", i%64)), encode(int64(i))); err == nil {
				n++
			}
			cancel()
		}
		writes <- n
	}()
	defer stopWrites()

	r := rules{dropFrom: map[string][]string{}, dropTo: map[string][]string{}}
	cut(r, []*kvnode{victim}, rest)
	if err := nw.apply(r); err != nil {
		t.Fatal(err)
	}
	cutAt := time.Now()
	// Both sides must have declared the other dead and then forgotten it
	// (memberlist reaps a dead member 30 s after declaring it).
	forgotten := func(by *kvnode, ids ...string) (bool, string) {
		topo, err := topologyOf(ctx, by)
		if err != nil {
			return false, fmt.Sprintf("%s: %v", by.id, err)
		}
		for _, m := range topo.Members {
			for _, id := range ids {
				if m.NodeID == id && m.GossipState != kv.GossipState_UNKNOWN {
					return false, fmt.Sprintf("%s sees %s as %s", by.id, id, m.GossipState)
				}
			}
		}
		return true, ""
	}
	testutil.Eventually(t, 150*time.Second, "gossip forgets the partitioned follower", func() error {
		ok1, why1 := forgotten(rest[0], victim.id)
		ok2, why2 := forgotten(rest[1], victim.id)
		ok3, why3 := forgotten(victim, rest[0].id, rest[1].id)
		if ok1 && ok2 && ok3 {
			return nil
		}
		return fmt.Errorf("%s %s %s", why1, why2, why3)
	})
	t.Logf("%s cut off for %v; both sides have forgotten each other", victim.id, time.Since(cutAt).Round(time.Second))

	if err := nw.heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	if err := c.waitAllReady(10 * time.Second); err != nil {
		t.Fatalf("after the heal: %v", err)
	}
	t.Logf("every node ready %v after the heal", time.Since(healed).Round(time.Millisecond))
	// Gossip heals too: every node sees every other alive.
	alive := func(by *kvnode) (bool, string) {
		topo, err := topologyOf(ctx, by)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range topo.Members {
			if m.GossipState != kv.GossipState_ALIVE {
				return false, fmt.Sprintf("%s sees %s as %s", by.id, m.NodeID, m.GossipState)
			}
		}
		return len(topo.Members) == 3, fmt.Sprintf("%s lists %d members", by.id, len(topo.Members))
	}
	testutil.Eventually(t, 15*time.Second, "gossip healed after the network", func() error {
		for _, n := range c.nodes {
			if ok, why := alive(n); !ok {
				return errors.New(why)
			}
		}
		return nil
	})
	t.Logf("gossip healed %v after the network", time.Since(healed).Round(time.Millisecond))
	stopWrites()
	if n := <-writes; n == 0 {
		t.Fatal("no write succeeded on the majority during the partition")
	}
	if _, _, err := c.digestsAgree(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// topologyOf asks n for its topology.
func topologyOf(ctx context.Context, n *kvnode) (*kv.Topology, error) {
	var topo *kv.Topology
	err := clusterDo(ctx, n.thriftAddr(), nil, func(ctx context.Context, cc *kv.ClusterClient) error {
		var err error
		topo, err = cc.Topology(ctx)
		return err
	})
	return topo, err
}
