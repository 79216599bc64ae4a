package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// loopRemote reaches other in-memory nodes directly, as the Thrift
// forwarder reaches their front doors.
type loopRemote struct {
	mu    sync.Mutex
	nodes map[string]*Node
}

func (r *loopRemote) node(id string) (*Node, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n, ok := r.nodes[id]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("%w: no node %s", ErrUnavailable, id)
}

func (r *loopRemote) ReadIndex(ctx context.Context, leaderID string) (uint64, error) {
	n, err := r.node(leaderID)
	if err != nil {
		return 0, err
	}
	return n.ReadIndex(ctx)
}

func (r *loopRemote) LeaderView(_ context.Context, id string) (uint64, string, error) {
	n, err := r.node(id)
	if err != nil {
		return 0, "", err
	}
	term, leader := n.LeaderView()
	return term, leader, nil
}

func (r *loopRemote) Apply(ctx context.Context, leaderID string, cmd *kv.Command) (*kv.WriteResult_, error) {
	n, err := r.node(leaderID)
	if err != nil {
		return nil, err
	}
	return n.ApplyLocal(ctx, cmd)
}

// TestNode_MembersTable: every node records its own addresses once it
// knows the leader (followers through the leader), every node resolves
// every other's Thrift address from the replicated table, and a removed
// node's entry is forgotten.
func TestNode_MembersTable(t *testing.T) {
	remote := &loopRemote{nodes: map[string]*Node{}}
	c := mustClusterWith(t, 3, func(_ int, cfg *Config) {
		cfg.Remote = remote
		cfg.ThriftAddr = "thrift-" + cfg.ID
		cfg.GossipAddr = "gossip-" + cfg.ID
		cfg.AdminAddr = "admin-" + cfg.ID
	})
	remote.mu.Lock()
	for _, n := range c.nodes {
		remote.nodes[n.ID()] = n
	}
	remote.mu.Unlock()
	leader := c.mustLeader(t)

	testutil.Eventually(t, 10*time.Second, "every node resolving every id through the members table", func() error {
		for _, n := range c.nodes {
			for _, want := range c.nodes {
				if got := n.ThriftAddr(want.ID()); got != "thrift-"+want.ID() {
					return fmt.Errorf("%s resolves %s to %q; table %+v", n.ID(), want.ID(), got, n.FSM().Members())
				}
			}
		}
		return nil
	})
	m, _ := leader.FSM().Member("n2")
	if want := (fsm.Member{ID: "n2", ThriftAddr: "thrift-n2", RaftAddr: string(c.trans[1].LocalAddr()), GossipAddr: "gossip-n2", AdminAddr: "admin-n2"}); m != want {
		t.Fatalf("n2's entry %+v, want %+v", m, want)
	}
	if got := leader.GossipPeers(); len(got) != 2 || got[leader.ID()] != "" {
		t.Fatalf("GossipPeers() = %v", got)
	}
	// Registering is done once: no MEMBER_SET while the entry is current.
	applied := leader.FSM().AppliedIndex()
	topo, err := leader.Topology()
	if err != nil {
		t.Fatal(err)
	}
	for _, mi := range topo.Members {
		if mi.ThriftAddr != "thrift-"+mi.ID || mi.AdminAddr != "admin-"+mi.ID || mi.GossipAddr != "gossip-"+mi.ID {
			t.Fatalf("topology member %+v", mi)
		}
	}

	// The leader refuses an entry for a node outside the configuration.
	ghost := &kv.Command{Op: kv.CommandOp_MEMBER_SET, Member: fsm.Member{ID: "n9", ThriftAddr: "x"}.ToKV()}
	if _, err := leader.ApplyLocal(context.Background(), ghost); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("MEMBER_SET for a non-member: %v, want ErrUnknownMember", err)
	}

	var gone *Node
	for _, n := range c.nodes {
		if n != leader {
			gone = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := leader.RemoveServer(ctx, gone.ID()); err != nil {
		t.Fatal(err)
	}
	if _, ok := leader.FSM().Member(gone.ID()); ok {
		t.Fatalf("%s's entry kept after its removal", gone.ID())
	}
	// The removed node, still running, must not put itself back: check
	// the table at every poll until the node can no longer register (it
	// has learned of its removal or lost the leader).
	testutil.WaitFor(t, 10*time.Second, "removed "+gone.ID()+" no longer able to register", func() bool {
		if _, ok := leader.FSM().Member(gone.ID()); ok {
			t.Fatalf("removed %s recorded itself again", gone.ID())
		}
		return !gone.canRegister()
	})
	if _, ok := leader.FSM().Member(gone.ID()); ok {
		t.Fatalf("removed %s recorded itself again", gone.ID())
	}
	if leader.FSM().AppliedIndex() < applied {
		t.Fatal("applied index went back")
	}
}
