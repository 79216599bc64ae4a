package integration

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// These tests restart, remove and replace nodes the way an operator would,
// and require every node to serve a linearizable read and a forwarded
// write through its own front door soon after it starts: no node may be
// stranded because gossip has not (yet) found its peers.

// serveDeadline is how long a restarted node may take to serve.
const serveDeadline = 10 * time.Second

var probeSeq atomic.Int64

// servesWithin requires p's front door to answer a write (forwarded when p
// is a follower) and a linearizable read of it within d of since.
func servesWithin(t *testing.T, p *proc, since time.Time, d time.Duration) {
	t.Helper()
	key := []byte(fmt.Sprintf("probe/%s/%d", p.id, probeSeq.Add(1)))
	val := []byte(fmt.Sprintf("v%d", time.Now().UnixNano()))
	var wrote bool
	eventually(t, time.Until(since.Add(d)), p.id+" serves a forwarded write and a linearizable read", func() (bool, string) {
		conn, err := transport.Dial(context.Background(), p.thriftAddr, &transport.DialConfig{RequestTimeout: 5 * time.Second})
		if err != nil {
			return false, err.Error()
		}
		defer conn.Close()
		if !wrote {
			if _, err := kvCall(t, conn, 5*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
				return k.Put(ctx, &kv.PutRequest{Key: key, Value: val})
			}); err != nil {
				return false, "put: " + err.Error()
			}
			wrote = true
		}
		r, err := kvCall(t, conn, 5*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
			return k.Get(ctx, &kv.GetRequest{Key: key})
		})
		if err != nil {
			return false, "get: " + err.Error()
		}
		if !r.Found || string(r.Entry.Value) != string(val) || r.Info.NodeID != p.id {
			return false, fmt.Sprintf("get answered %+v", r)
		}
		return true, ""
	})
	t.Logf("%s serves %v after its start", p.id, time.Since(since).Round(time.Millisecond))
}

// setFlag replaces flag's value in p.extra, or appends it.
func setFlag(p *proc, flag, value string) {
	for i := 0; i+1 < len(p.extra); i++ {
		if p.extra[i] == flag {
			p.extra[i+1] = value
			return
		}
	}
	p.extra = append(p.extra, flag, value)
}

// dropFlag removes flag and its value from p.extra.
func dropFlag(p *proc, flag string) {
	for i := 0; i+1 < len(p.extra); i++ {
		if p.extra[i] == flag {
			p.extra = slices.Delete(p.extra, i, i+2)
			return
		}
	}
}

// topologyOf asks p for its topology on a connection of its own.
func topologyOf(t *testing.T, p *proc) (*kv.Topology, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := transport.Dial(ctx, p.thriftAddr, &transport.DialConfig{RequestTimeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var topo *kv.Topology
	_, err = conn.Do(ctx, func(ctx context.Context) error {
		var err error
		topo, err = conn.Cluster.Topology(ctx)
		return err
	})
	return topo, err
}

// seesAllAlive requires p's topology to list exactly ids as Raft members,
// each alive in gossip and with a Thrift address, within timeout. Nodes
// outside the Raft configuration (a removed node gossip still remembers as
// failed) are not counted.
func seesAllAlive(t *testing.T, p *proc, timeout time.Duration, ids ...string) {
	t.Helper()
	eventually(t, timeout, p.id+" sees "+fmt.Sprint(ids)+" alive", func() (bool, string) {
		topo, err := topologyOf(t, p)
		if err != nil {
			return false, err.Error()
		}
		var got []string
		for _, m := range topo.Members {
			if m.Suffrage == nil {
				continue
			}
			if m.GossipState != kv.GossipState_ALIVE || m.ThriftAddr == "" {
				return false, fmt.Sprintf("%s is %s at %q", m.NodeID, m.GossipState, m.ThriftAddr)
			}
			got = append(got, m.NodeID)
		}
		return slices.Equal(got, ids), fmt.Sprint(got)
	})
}

// startSeededCluster starts three nodes that all name only n1's gossip
// address in --join, as a new user following the README would.
func startSeededCluster(t *testing.T) *testCluster {
	t.Helper()
	var seed string
	return startClusterWith(t, 3, func(p *proc) {
		if p.id == "n1" {
			seed = p.gossipAddr
		}
		setFlag(p, "--join", seed)
	})
}

// A node killed, kept down past memberlist's dead-node timeouts, and
// restarted with --join naming only itself serves within 10 s.
func TestMembership_RestartWithOnlySelfAsSeedAfterDowntime(t *testing.T) {
	t.Parallel()
	c := startSeededCluster(t)
	n1 := c.byID("n1")
	n1.kill()
	killed := time.Now()
	// Down for 60 s, and until the others' gossip has declared n1 dead and
	// forgotten it (memberlist reaps a dead member 30 s after declaring it),
	// so nothing in memberlist will ever probe it again.
	eventually(t, 120*time.Second, "n1 down 60 s and forgotten by gossip", func() (bool, string) {
		for _, p := range []*proc{c.byID("n2"), c.byID("n3")} {
			topo, err := topologyOf(t, p)
			if err != nil {
				return false, err.Error()
			}
			for _, m := range topo.Members {
				if m.NodeID == "n1" && m.GossipState != kv.GossipState_UNKNOWN {
					return false, p.id + " still sees n1 as " + m.GossipState.String()
				}
			}
		}
		return time.Since(killed) >= 60*time.Second, "down " + time.Since(killed).Round(time.Second).String()
	})
	setFlag(n1, "--join", n1.gossipAddr)
	start := time.Now()
	n1.launch()
	servesWithin(t, n1, start, serveDeadline)
	for _, p := range c.procs {
		seesAllAlive(t, p, 15*time.Second, "n1", "n2", "n3")
	}
}

// The only seed is removed for good and replaced; then every other node
// restarts with the dead seed still in its --join. All serve within 10 s,
// and they find each other through the members table.
func TestMembership_OnlySeedRemovedThenEveryoneRestarts(t *testing.T) {
	t.Parallel()
	c := startSeededCluster(t)
	n1, n2, n3 := c.byID("n1"), c.byID("n2"), c.byID("n3")
	leader := c.waitLeader(10 * time.Second)
	if leader == n1 {
		if _, err := clusterCall(t, n1.thriftAddr, 30*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.TransferLeadershipResponse, error) {
			return k.TransferLeadership(ctx, &kv.TransferLeadershipRequest{})
		}); err != nil {
			t.Fatalf("transfer: %v", err)
		}
		leader = c.waitLeader(10*time.Second, n1)
	}
	if _, err := clusterCall(t, leader.thriftAddr, 30*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return k.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: "n1"})
	}); err != nil {
		t.Fatalf("remove n1: %v", err)
	}
	n1.kill()
	c.procs = []*proc{n2, n3}

	n4 := newProc(t, "n4", "--bootstrap", "false", "--join", n2.gossipAddr, "--request-timeout", "3s")
	n4.launch()
	c.procs = append(c.procs, n4)
	if _, err := clusterCall(t, leader.thriftAddr, 90*time.Second, func(ctx context.Context, k *kv.ClusterClient) (*kv.MemberChangeResponse, error) {
		return k.AddMember(ctx, &kv.AddMemberRequest{NodeID: n4.id, RaftAddr: n4.raftAddr})
	}); err != nil {
		t.Fatalf("add n4: %v", err)
	}
	n4.waitReady(30 * time.Second)

	for _, p := range []*proc{n2, n3, n4} {
		if err := p.stop(15 * time.Second); err != nil {
			t.Fatalf("stop %s: %v", p.id, err)
		}
		start := time.Now()
		p.launch()
		servesWithin(t, p, start, serveDeadline)
	}
	for _, p := range c.procs {
		seesAllAlive(t, p, 15*time.Second, "n2", "n3", "n4")
	}
}

// A node restarted with no --join at all rejoins gossip through the members
// table and serves within 10 s.
func TestMembership_RestartWithoutJoin(t *testing.T) {
	c := startCluster(t, 3)
	n3 := c.byID("n3")
	n3.kill()
	dropFlag(n3, "--join")
	start := time.Now()
	n3.launch()
	servesWithin(t, n3, start, serveDeadline)
	for _, p := range c.procs {
		seesAllAlive(t, p, 15*time.Second, "n1", "n2", "n3")
	}
}

// With gossip off on every node, forwarding, linearizable reads on
// followers, status and topology work from the members table, also after
// a follower restarts.
func TestMembership_GossipOff(t *testing.T) {
	c := startClusterWith(t, 3, func(p *proc) {
		dropFlag(p, "--join")
		p.gossipAddr = ""
	})
	leader := c.waitLeader(10 * time.Second)
	for _, p := range c.procs {
		servesWithin(t, p, time.Now(), serveDeadline)
	}
	cl := mustClient(t, c.followers(leader)[0].thriftAddr)
	for _, p := range c.procs {
		st := mustStatus(t, cl, p.thriftAddr)
		if st.NodeID != p.id {
			t.Fatalf("status of %s answered by %s", p.id, st.NodeID)
		}
	}
	// Every node records its own addresses once it knows the leader.
	eventually(t, 10*time.Second, "every node's addresses in the leader's topology", func() (bool, string) {
		topo, err := topologyOf(t, leader)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range topo.Members {
			if p := c.byID(m.NodeID); m.ThriftAddr != p.thriftAddr || m.RaftAddr != p.raftAddr || m.AdminAddr != p.adminAddr {
				return false, fmt.Sprintf("member %+v, want %s at %s", m, p.id, p.thriftAddr)
			}
		}
		return len(topo.Members) == 3, fmt.Sprint(len(topo.Members), " members")
	})
	f := c.followers(leader)[1]
	f.kill()
	start := time.Now()
	f.launch()
	servesWithin(t, f, start, serveDeadline)
}
