package node_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/node/nodetest"
	"github.com/cubekv/cubekv/thrift/kv"
)

func grantCmd(ttl time.Duration) *kv.Command {
	ms := ttl.Milliseconds()
	return &kv.Command{Op: kv.CommandOp_LEASE_GRANT, TTLMs: &ms}
}

func leasedPut(key string, lease int64) *kv.Command {
	c := putCmd(key, "v")
	c.LeaseID = &lease
	return c
}

// waitGone polls until key is gone from every node's state machine.
func waitGone(t *testing.T, nodes []*node.Node, key string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, key+" gone on every node", func() error {
		for _, n := range nodes {
			if _, found, _ := n.FSM().Get([]byte(key)); found {
				return fmt.Errorf("%s still has it", n.ID())
			}
		}
		return nil
	})
}

// TestLease_LeaderExpiresThroughTheLog: a lease nobody keeps alive is
// revoked by the leader through Raft, so every node loses its key; one kept
// alive outlives its TTL; the leader alone answers keep-alives here (no
// LeaseRemote), and a keep-alive of a revoked lease is LeaseNotFound.
func TestLease_LeaderExpiresThroughTheLog(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	leader := c.Leader()
	ctx := testCtx(t)
	short, err := leader.Apply(ctx, grantCmd(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := leader.Apply(ctx, grantCmd(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for key, id := range map[string]int64{"short": short.Index, "kept": kept.Index} {
		if _, err := leader.Apply(ctx, leasedPut(key, id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Others(leader)[0].KeepAlive(ctx, uint64(kept.Index)); !errors.Is(err, node.ErrNotLeader) {
		t.Fatalf("keep-alive on a follower without LeaseRemote: %v", err)
	}
	// Keep "kept" alive for well over its TTL; "short" goes meanwhile.
	start := time.Now()
	for time.Since(start) < time.Second {
		if ttl, err := leader.KeepAlive(ctx, uint64(kept.Index)); err != nil || ttl != 300*time.Millisecond {
			t.Fatalf("keep-alive: %v %v", ttl, err)
		}
		<-time.After(50 * time.Millisecond) // the keep-alive interval
	}
	waitGone(t, c.Nodes(), "short")
	for _, n := range c.Nodes() {
		if _, found, _ := n.FSM().Get([]byte("kept")); !found {
			t.Fatalf("%s: a key whose lease was kept alive expired", n.ID())
		}
	}
	waitGone(t, c.Nodes(), "kept")
	if _, err := leader.KeepAlive(ctx, uint64(kept.Index)); !errors.Is(err, fsm.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of an expired lease: %v", err)
	}
	if n := leader.FSM().LeaseCount(); n != 0 {
		t.Fatalf("%d leases left", n)
	}
}

// TestLease_NewLeaderRestartsCountdown: after the leader is cut off, the
// new one counts a full TTL from its promotion, then revokes.
func TestLease_NewLeaderRestartsCountdown(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	old := c.Leader()
	ctx := testCtx(t)
	g, err := old.Apply(ctx, grantCmd(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Apply(ctx, leasedPut("k", g.Index)); err != nil {
		t.Fatal(err)
	}
	c.Isolate(old.ID())
	leader := c.Leader()
	if leader == old {
		t.Fatal("the isolated node is still the ready leader")
	}
	info, err := leader.LeaseInfo(ctx, uint64(g.Index), true)
	if err != nil {
		t.Fatalf("lease info on the new leader: %v", err)
	}
	if info.Remaining <= 0 || info.Remaining > time.Second || len(info.KeyList) != 1 {
		t.Fatalf("new leader's view: %+v", info)
	}
	// Its countdown started at its promotion: the key is there now, and
	// goes once the full TTL has passed.
	promoted := time.Now().Add(info.Remaining - time.Second)
	if _, found, _ := leader.FSM().Get([]byte("k")); !found {
		t.Fatal("key gone as soon as the new leader was ready")
	}
	waitGone(t, c.Others(old), "k")
	if gone := time.Since(promoted); gone < time.Second {
		t.Fatalf("key gone %v after the new leader's promotion, before a full TTL", gone)
	}
}
