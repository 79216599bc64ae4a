package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/node"
	"github.com/cubekv/cubekv/node/nodetest"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The tests in this file run node's paths that need other nodes
// (forwarding, membership changes, leadership transfer, backup and
// restore) on an in-process nodetest.Cluster.

func putCmd(key, value string) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_PUT, Key: []byte(key), Value: []byte(value)}
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustHave waits until n has applied key with value.
func mustHave(t *testing.T, n *node.Node, key, value string) {
	t.Helper()
	testutil.Eventually(t, nodetest.WaitTimeout, fmt.Sprintf("%s applies %s=%s", n.ID(), key, value), func() error {
		e, found, _ := n.FSM().Get([]byte(key))
		if !found || string(e.Value) != value {
			return fmt.Errorf("%s = %q (found %v)", key, e.Value, found)
		}
		return nil
	})
}

// suffrage returns id's vote in n's latest Raft configuration.
func suffrage(t *testing.T, n *node.Node, id string) node.Suffrage {
	t.Helper()
	servers, _, err := n.Configuration()
	if err != nil {
		t.Fatalf("configuration on %s: %v", n.ID(), err)
	}
	for _, s := range servers {
		if s.ID == id {
			return s.Suffrage
		}
	}
	return node.SuffrageNone
}

func TestCluster_FollowerForwardsWriteToLeader(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	leader := c.Leader()
	f := c.Others(leader)[0]
	ctx := testCtx(t)

	before := c.Calls().Apply
	res, err := f.Apply(ctx, putCmd("a", "1"))
	if err != nil {
		t.Fatalf("apply on follower %s: %v", f.ID(), err)
	}
	if got := c.Calls().Apply - before; got != 1 || f.Forwarded() != 1 {
		t.Fatalf("follower made %d forwarding calls and counts %d forwarded writes, want 1 and 1", got, f.Forwarded())
	}
	if leader.Forwarded() != 0 {
		t.Fatalf("leader forwarded %d writes, want 0", leader.Forwarded())
	}
	// The leader applied it: acknowledged means committed there.
	if e, found, _ := leader.FSM().Get([]byte("a")); !found || string(e.Value) != "1" || e.ModIndex != uint64(res.Index) {
		t.Fatalf("leader has a = %+v (found %v), want 1 at %d", e, found, res.Index)
	}
	// A linearizable read on the follower goes through the leader's read
	// index, so it sees the write it forwarded.
	e, found, info, err := f.Get(ctx, []byte("a"), kv.Consistency_LINEARIZABLE)
	if err != nil || !found || e.ModIndex != uint64(res.Index) || info.NodeID != f.ID() {
		t.Fatalf("follower linearizable get = %+v %v %+v %v, want a at %d served by %s", e, found, info, err, res.Index, f.ID())
	}
}

func TestCluster_ForwardFailsWithoutReachableLeader(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	leader := c.Leader()
	others := c.Others(leader)
	ctx := testCtx(t)

	// The leader is known but cannot be reached: the write is not applied
	// anywhere, and the error says so (ErrUnavailable, not ErrTimeout).
	cut := others[0]
	c.Cut(cut.ID(), leader.ID())
	if _, err := cut.Apply(ctx, putCmd("cut", "1")); !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("apply through a cut link = %v, want ErrUnavailable", err)
	}
	if _, found, _ := leader.FSM().Get([]byte("cut")); found {
		t.Fatal("a write refused as unavailable was applied by the leader")
	}

	// No leader at all: the follower refuses without forwarding.
	lone := others[1]
	c.Isolate(lone.ID())
	testutil.WaitFor(t, nodetest.WaitTimeout, lone.ID()+" to forget the leader", func() bool {
		return lone.Status().LeaderID == ""
	})
	forwarded := lone.Forwarded()
	if _, err := lone.Apply(ctx, putCmd("lone", "1")); !errors.Is(err, node.ErrNoLeader) {
		t.Fatalf("apply with no leader = %v, want ErrNoLeader", err)
	}
	if lone.Forwarded() != forwarded {
		t.Fatal("a write was forwarded with no leader known")
	}
}

func TestCluster_MembershipAddPromoteRemove(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	leader := c.Leader()
	follower := c.Others(leader)[0]
	ctx := testCtx(t)
	if _, err := leader.Apply(ctx, putCmd("before", "1")); err != nil {
		t.Fatal(err)
	}

	// Only the leader changes the configuration.
	var nl *node.NotLeaderError
	if _, err := follower.AddNonvoter(ctx, "n4", c.RaftAddr(follower.ID())); !errors.As(err, &nl) || nl.LeaderID != leader.ID() {
		t.Fatalf("add on a follower = %v, want NotLeaderError naming %s", err, leader.ID())
	}

	n4 := c.Join("n4")
	if _, err := leader.AddNonvoter(ctx, "n4", c.RaftAddr("n4")); err != nil {
		t.Fatalf("add nonvoter: %v", err)
	}
	if s := suffrage(t, leader, "n4"); s != node.SuffrageNonvoter {
		t.Fatalf("n4 is %v after AddNonvoter, want nonvoter", s)
	}
	mustHave(t, n4, "before", "1") // it receives the log
	// Adding it again at the same address changes nothing; at another
	// address it is refused.
	_, idx, err := leader.Configuration()
	if err != nil {
		t.Fatal(err)
	}
	if again, err := leader.AddNonvoter(ctx, "n4", c.RaftAddr("n4")); err != nil || again != idx {
		t.Fatalf("repeated add = %d, %v; want the current configuration index %d", again, err, idx)
	}
	if _, err := leader.AddNonvoter(ctx, "n4", "elsewhere"); !errors.Is(err, node.ErrMembership) {
		t.Fatalf("add at another address = %v, want ErrMembership", err)
	}

	if _, err := leader.Promote(ctx, "n4"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	if s := suffrage(t, leader, "n4"); s != node.SuffrageVoter {
		t.Fatalf("n4 is %v after Promote, want voter", s)
	}
	// The topology merges the configuration, the members table (n4
	// records its own addresses once it knows the leader) and gossip.
	testutil.Eventually(t, nodetest.WaitTimeout, "n4 in the topology", func() error {
		top, err := leader.Topology()
		if err != nil {
			return err
		}
		for _, m := range top.Members {
			if m.ID == "n4" {
				if m.Suffrage != node.SuffrageVoter || m.ThriftAddr != nodetest.ThriftAddr("n4") || m.GossipState != gossip.StateAlive {
					return fmt.Errorf("n4 = %+v", m)
				}
				return nil
			}
		}
		return fmt.Errorf("n4 missing from %+v", top.Members)
	})
	testutil.WaitFor(t, nodetest.WaitTimeout, "n4 in the members table", func() bool {
		_, ok := leader.FSM().Member("n4")
		return ok
	})

	if _, err := leader.RemoveServer(ctx, "n4"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if s := suffrage(t, leader, "n4"); s != node.SuffrageNone {
		t.Fatalf("n4 is %v after RemoveServer, want gone", s)
	}
	if _, ok := leader.FSM().Member("n4"); ok {
		t.Fatal("the members table still holds the removed n4")
	}
	for _, op := range []func() (uint64, error){
		func() (uint64, error) { return leader.Promote(ctx, "n4") },
		func() (uint64, error) { return leader.RemoveServer(ctx, "n4") },
	} {
		if _, err := op(); !errors.Is(err, node.ErrUnknownMember) {
			t.Fatalf("change of the removed n4 = %v, want ErrUnknownMember", err)
		}
	}
}

func TestCluster_TopologyMergesGossip(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	leader := c.Leader()
	other := c.Others(leader)[0]
	c.Gossip.SetState(other.ID(), gossip.StateDead)
	c.Gossip.Set(gossip.Member{Meta: gossip.Meta{ID: "n9", ThriftAddr: "thrift-n9", RaftAddr: "raft-n9"}, GossipAddr: "gossip-n9"})
	top, err := leader.Topology()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]node.MemberInfo{}
	for _, m := range top.Members {
		byID[m.ID] = m
	}
	if m := byID[other.ID()]; m.GossipState != gossip.StateDead || m.Suffrage != node.SuffrageVoter {
		t.Fatalf("%s = %+v, want a voter gossip reports dead", other.ID(), m)
	}
	if m := byID["n9"]; m.Suffrage != node.SuffrageNone || m.ThriftAddr != "thrift-n9" || m.GossipState != gossip.StateAlive {
		t.Fatalf("n9 = %+v, want an alive gossip member outside the configuration", m)
	}
	if m := byID[leader.ID()]; !m.Leader || top.LeaderID != leader.ID() || len(top.Members) != 4 {
		t.Fatalf("topology = %+v, want 4 members led by %s", top, leader.ID())
	}
}

func TestCluster_TransferLeadership(t *testing.T) {
	c := nodetest.New(t, 3, nil)
	leader := c.Leader()
	// The last of the others: raft's untargeted transfer picks the first
	// most up-to-date voter, so a transfer that ignored its target would
	// usually pick another.
	target := c.Others(leader)[1]
	ctx := testCtx(t)

	if _, err := target.TransferLeadership(ctx, ""); !errors.Is(err, node.ErrNotLeader) {
		t.Fatalf("transfer on a follower = %v, want ErrNotLeader", err)
	}
	if _, err := leader.TransferLeadership(ctx, "n9"); !errors.Is(err, node.ErrUnknownMember) {
		t.Fatalf("transfer to an unknown node = %v, want ErrUnknownMember", err)
	}
	c.Join("n4")
	if _, err := leader.AddNonvoter(ctx, "n4", c.RaftAddr("n4")); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.TransferLeadership(ctx, "n4"); !errors.Is(err, node.ErrMembership) {
		t.Fatalf("transfer to a nonvoter = %v, want ErrMembership", err)
	}

	got, err := leader.TransferLeadership(ctx, target.ID())
	if err != nil || got != target.ID() {
		t.Fatalf("transfer to %s = %q, %v", target.ID(), got, err)
	}
	if now := c.Leader(); now != target {
		t.Fatalf("ready leader after the transfer is %s, want %s", now.ID(), target.ID())
	}
	// The former leader forwards to the new one.
	res, err := leader.Apply(ctx, putCmd("after", "1"))
	if err != nil || leader.Forwarded() != 1 {
		t.Fatalf("write on the former leader = %+v, %v (forwarded %d)", res, err, leader.Forwarded())
	}
	mustHave(t, target, "after", "1")

	// With no target, leadership goes to some other voter.
	got, err = target.TransferLeadership(ctx, "")
	if err != nil || got == target.ID() || got == "n4" {
		t.Fatalf("transfer to any voter = %q, %v", got, err)
	}
	if now := c.Leader(); now.ID() != got {
		t.Fatalf("ready leader is %s, transfer said %s", now.ID(), got)
	}
}

func TestCluster_BackupAndRestore(t *testing.T) {
	ctx := testCtx(t)
	src := nodetest.New(t, 3, nil)
	leader := src.Leader()
	const keys = 50
	for i := 0; i < keys; i++ {
		if _, err := leader.Apply(ctx, putCmd(fmt.Sprintf("k%02d", i), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	// A follower's backup holds every acknowledged write: it waits for the
	// leader's read index first.
	f := src.Others(leader)[0]
	var buf bytes.Buffer
	info, size, err := f.SnapshotTo(ctx, &buf)
	if err != nil {
		t.Fatalf("backup on follower: %v", err)
	}
	if info.Entries != keys || size != int64(buf.Len()) {
		t.Fatalf("backup = %+v, %d bytes (buffer %d), want %d keys", info, size, buf.Len(), keys)
	}
	// Without the leader's read index there is no backup.
	src.Cut(f.ID(), leader.ID())
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := f.SnapshotTo(short, &bytes.Buffer{}); !errors.Is(err, node.ErrUnavailable) {
		t.Fatalf("backup without the leader = %v, want ErrUnavailable", err)
	}

	dir := t.TempDir()
	good := filepath.Join(dir, "backup")
	if err := os.WriteFile(good, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "damaged")
	if err := os.WriteFile(bad, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.FlipByte(t, bad)

	dst := nodetest.New(t, 3, nil)
	dl := dst.Leader()
	if _, err := dl.Apply(ctx, putCmd("old", "x")); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Others(dl)[0].RestoreFrom(ctx, good); !errors.Is(err, node.ErrNotLeader) && !errors.Is(err, node.ErrNoLeader) {
		t.Fatalf("restore on a follower = %v, want ErrNotLeader or ErrNoLeader", err)
	}
	if _, err := dl.RestoreFrom(ctx, bad); err == nil {
		t.Fatal("a damaged backup was restored")
	}
	mustHave(t, dl, "old", "x") // the refused restore changed nothing
	got, err := dl.RestoreFrom(ctx, good)
	if err != nil || got.Entries != keys {
		t.Fatalf("restore = %+v, %v; want %d keys", got, err, keys)
	}
	// Every node gets the backup's state, and only it.
	for _, n := range dst.Nodes() {
		mustHave(t, n, fmt.Sprintf("k%02d", keys-1), fmt.Sprint(keys-1))
		if _, found, _ := n.FSM().Get([]byte("old")); found {
			t.Fatalf("%s kept a key the backup does not hold", n.ID())
		}
	}
	// Linearizable reads resume on the restored state.
	now := dst.Leader()
	e, found, _, err := now.Get(ctx, []byte("k00"), kv.Consistency_LINEARIZABLE)
	if err != nil || !found || string(e.Value) != "0" {
		t.Fatalf("linearizable get after restore = %+v %v %v", e, found, err)
	}
}
