package nodetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/gossip"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/node"
)

// WaitTimeout bounds how long the Cluster's helpers wait for an election,
// a node to catch up, or a configuration to change.
const WaitTimeout = 10 * time.Second

// Cluster is a set of in-memory nodes connected by raft.InmemTransport.
// Every node has a loopback Remote to the others and shares one fake
// gossip view, Gossip, in which every running node is alive. Node i of n
// has id "n<i>" (from n1) and advertises ThriftAddr(id), "gossip-<id>" and
// "admin-<id>", which it records in the replicated members table as a real
// node does. The nodes close when the test ends.
type Cluster struct {
	// Gossip is the liveness view every node's Config.Membership reads.
	Gossip *Membership

	tb    testing.TB
	tweak func(cfg *node.Config)
	calls callCounters

	mu      sync.Mutex
	ids     []string // in the order the nodes started
	nodes   map[string]*node.Node
	trans   map[string]*raft.InmemTransport
	serving map[string]*node.Node // open nodes by Thrift address
	cut     map[[2]string]bool    // [from, to] pairs whose Remote calls fail
	isolate map[string]bool       // nodes cut off by Isolate
}

// ThriftAddr is the Thrift address a Cluster's node id advertises. Nothing
// listens there: the loopback Remote maps it back to the node.
func ThriftAddr(id string) string { return "thrift-" + id }

// New starts n nodes bootstrapped as one cluster (a one-node cluster when n
// is 1). tweak, when not nil, changes each node's Config (from Config,
// with the cluster's Remote, Membership and addresses set) before the
// node is built. New does not wait for a leader; Leader does.
func New(tb testing.TB, n int, tweak func(cfg *node.Config)) *Cluster {
	tb.Helper()
	c := &Cluster{
		Gossip:  &Membership{},
		tb:      tb,
		tweak:   tweak,
		nodes:   map[string]*node.Node{},
		trans:   map[string]*raft.InmemTransport{},
		serving: map[string]*node.Node{},
		cut:     map[[2]string]bool{},
		isolate: map[string]bool{},
	}
	tb.Cleanup(c.closeAll)
	var peers []node.Peer
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		peers = append(peers, node.Peer{ID: id, RaftAddr: string(c.connect(id))})
	}
	for _, p := range peers {
		if n == 1 {
			c.start(p.ID, func(cfg *node.Config) { cfg.Bootstrap = true })
		} else {
			c.start(p.ID, func(cfg *node.Config) { cfg.InitialCluster = peers })
		}
	}
	return c
}

// Join starts an empty node id, connected to every other node but in no
// Raft configuration, as kvnode starts one to be added with
// AddNonvoter(id, c.RaftAddr(id)).
func (c *Cluster) Join(id string) *node.Node {
	c.tb.Helper()
	c.connect(id)
	return c.start(id, nil)
}

// connect makes id's transport and connects it both ways with every other
// node's.
func (c *Cluster) connect(id string) raft.ServerAddress {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.trans[id]; dup {
		c.tb.Fatalf("node %s started twice", id)
	}
	addr, tr := raft.NewInmemTransport("")
	for _, other := range c.trans {
		tr.Connect(other.LocalAddr(), other)
		other.Connect(addr, tr)
	}
	c.trans[id] = tr
	return addr
}

func (c *Cluster) start(id string, boot func(cfg *node.Config)) *node.Node {
	c.tb.Helper()
	c.mu.Lock()
	tr := c.trans[id]
	c.mu.Unlock()
	cfg := Config(c.tb, id, tr)
	cfg.ThriftAddr, cfg.GossipAddr, cfg.AdminAddr = ThriftAddr(id), "gossip-"+id, "admin-"+id
	cfg.Membership = c.Gossip
	cfg.Remote = &loopback{c: c, from: id}
	if boot != nil {
		boot(cfg)
	}
	if c.tweak != nil {
		c.tweak(cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		c.tb.Fatalf("new node %s: %v", id, err)
	}
	c.mu.Lock()
	c.ids = append(c.ids, id)
	c.nodes[id] = n
	c.mu.Unlock()
	if err := n.Open(); err != nil {
		c.tb.Fatalf("open node %s: %v", id, err)
	}
	c.mu.Lock()
	c.serving[cfg.ThriftAddr] = n
	c.mu.Unlock()
	c.Gossip.Set(gossip.Member{
		Meta:       gossip.Meta{ID: id, ThriftAddr: cfg.ThriftAddr, RaftAddr: string(tr.LocalAddr()), AdminAddr: cfg.AdminAddr, Version: "test"},
		GossipAddr: cfg.GossipAddr,
	})
	return n
}

func (c *Cluster) closeAll() {
	for _, n := range c.Nodes() {
		_ = n.Close()
	}
}

// Nodes returns every node started, stopped ones included, in the order
// they started.
func (c *Cluster) Nodes() []*node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*node.Node, 0, len(c.ids))
	for _, id := range c.ids {
		out = append(out, c.nodes[id])
	}
	return out
}

// Node returns node id, or nil.
func (c *Cluster) Node(id string) *node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// Others returns every node but n.
func (c *Cluster) Others(n *node.Node) []*node.Node {
	var out []*node.Node
	for _, o := range c.Nodes() {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

// RaftAddr returns node id's in-memory Raft address.
func (c *Cluster) RaftAddr(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tr, ok := c.trans[id]
	if !ok {
		c.tb.Fatalf("no node %s", id)
	}
	return string(tr.LocalAddr())
}

// Leader waits until one running node is a leader ready to serve
// linearizable reads and every other running member of its configuration,
// unless isolated, follows it; it returns the leader.
func (c *Cluster) Leader() *node.Node {
	c.tb.Helper()
	var leader *node.Node
	testutil.Eventually(c.tb, WaitTimeout, "a ready leader every member follows", func() error {
		leader = c.readyLeader()
		if leader == nil {
			return errors.New("no node is a ready leader")
		}
		servers, _, err := leader.Configuration()
		if err != nil {
			return err
		}
		member := map[string]bool{}
		for _, s := range servers {
			member[s.ID] = true
		}
		for _, n := range c.running() {
			if !member[n.ID()] || c.isolated(n.ID()) {
				continue
			}
			if got := n.Status().LeaderID; got != leader.ID() {
				return fmt.Errorf("%s follows %q, not the leader %s", n.ID(), got, leader.ID())
			}
		}
		return nil
	})
	return leader
}

// readyLeader returns the running node that is leader and serves a read
// index, or nil.
func (c *Cluster) readyLeader() *node.Node {
	for _, n := range c.running() {
		if n.Status().Role != node.RoleLeader {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := n.ReadIndex(ctx)
		cancel()
		if err == nil {
			return n
		}
	}
	return nil
}

// running returns the nodes not stopped.
func (c *Cluster) running() []*node.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*node.Node
	for _, id := range c.ids {
		n := c.nodes[id]
		if c.serving[ThriftAddr(id)] == n {
			out = append(out, n)
		}
	}
	return out
}

func (c *Cluster) isolated(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isolate[id]
}

// Cut makes from's Remote calls to to fail with node.ErrUnavailable; Raft
// traffic is untouched.
func (c *Cluster) Cut(from, to string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut[[2]string{from, to}] = true
}

// Isolate cuts node id off from every other node, its Raft transport and
// its Remote calls both ways, as a network partition does.
func (c *Cluster) Isolate(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isolate[id] = true
	tr := c.trans[id]
	tr.DisconnectAll()
	for other, otr := range c.trans {
		if other != id {
			otr.Disconnect(tr.LocalAddr())
			c.cut[[2]string{id, other}] = true
			c.cut[[2]string{other, id}] = true
		}
	}
}

// Heal undoes Isolate and Cut for node id.
func (c *Cluster) Heal(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.isolate, id)
	tr := c.trans[id]
	for other, otr := range c.trans {
		if other != id {
			tr.Connect(otr.LocalAddr(), otr)
			otr.Connect(tr.LocalAddr(), tr)
			delete(c.cut, [2]string{id, other})
			delete(c.cut, [2]string{other, id})
		}
	}
}

// Stop closes node id: it stops serving Remote calls, and gossip reports
// it dead.
func (c *Cluster) Stop(id string) {
	c.tb.Helper()
	n := c.Node(id)
	if n == nil {
		c.tb.Fatalf("no node %s", id)
	}
	c.mu.Lock()
	delete(c.serving, ThriftAddr(id))
	c.mu.Unlock()
	if err := n.Close(); err != nil {
		c.tb.Fatalf("close node %s: %v", id, err)
	}
	c.Gossip.SetState(id, gossip.StateDead)
}

// Calls returns how many Remote calls the nodes made so far.
func (c *Cluster) Calls() Calls {
	return Calls{
		Apply:      c.calls.apply.Load(),
		ReadIndex:  c.calls.readIndex.Load(),
		LeaderView: c.calls.leaderView.Load(),
	}
}
