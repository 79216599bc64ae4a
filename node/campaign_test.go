package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
)

func TestSoleVoter(t *testing.T) {
	v := func(id string) raft.Server { return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id)} }
	nv := func(id string) raft.Server { return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id)} }
	for _, tc := range []struct {
		name    string
		servers []raft.Server
		want    bool
	}{
		{"alone", []raft.Server{v("n1")}, true},
		{"with a nonvoter", []raft.Server{v("n1"), nv("n2")}, true},
		{"two voters", []raft.Server{v("n1"), v("n2")}, false},
		{"another node's", []raft.Server{v("n2")}, false},
		{"a nonvoter itself", []raft.Server{nv("n1"), v("n2")}, false},
		{"empty", nil, false},
	} {
		if got := soleVoter(raft.Configuration{Servers: tc.servers}, "n1"); got != tc.want {
			t.Errorf("%s: soleVoter = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestNode_SoleVoterElectsWithoutWaitingForTheHeartbeatTimeout gives a
// one-node cluster a heartbeat timeout of a minute: it must still become
// leader, on its first start and on a restart on the same stores, long
// before that minute has passed.
func TestNode_SoleVoterElectsWithoutWaitingForTheHeartbeatTimeout(t *testing.T) {
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	open := func(bootstrap bool) *Node {
		addr, trans := raft.NewInmemTransport("n1")
		trans.Connect(addr, trans) // the node reaches its own address, as over TCP
		cfg := fastConfig(t, "n1", trans)
		cfg.LogStore, cfg.StableStore, cfg.SnapshotStore = store, store, snaps
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Minute, time.Minute, time.Minute
		cfg.Bootstrap = bootstrap
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Open(); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, first := range []bool{true, false} {
		n := open(first)
		testutil.Eventually(t, 10*time.Second, "leadership without the minute's heartbeat timeout", func() error {
			if s := n.raft.State(); s != raft.Leader {
				return fmt.Errorf("state %v", s)
			}
			return nil
		})
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
