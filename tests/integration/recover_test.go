package integration

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// TestCluster_MajorityLostForceNewCluster loses two of three nodes for good,
// forces a new one-node cluster from the survivor's data, checks every
// acknowledged write is there, and grows the cluster again.
func TestCluster_MajorityLostForceNewCluster(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	ctx := ctxTimeout(t, 2*time.Minute)
	mustPutSeq(t, ctx, cl, 300, "k%03d", "v%d")
	// Recover from a node that has everything acknowledged: with a majority
	// gone, writes the survivor never received are gone with them, which is
	// why operators pick the most up-to-date node (docs/operations.md).
	survivor := c.followers(leader)[0]
	lst, err := adminStatus(leader)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, survivor.id+" caught up with the leader", func() (bool, string) {
		st, err := adminStatus(survivor)
		if err != nil {
			return false, err.Error()
		}
		return st["applied_index"].(float64) >= lst["commit_index"].(float64), fmt.Sprintf("applied %v, leader commit %v", st["applied_index"], lst["commit_index"])
	})
	for _, p := range c.procs {
		p.kill()
	}

	// While the others are gone, the survivor alone has no quorum.
	out, err := exec.Command(kvnodeBin, append(survivor.args(), "--force-new-cluster")...).CombinedOutput()
	if err != nil {
		t.Fatalf("force-new-cluster: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "is now the only voter") {
		t.Fatalf("force-new-cluster printed %q", out)
	}
	survivor.start()
	sc := mustClient(t, survivor.thriftAddr)
	for i := 0; i < 300; i++ {
		r, err := sc.Get(ctx, []byte(fmt.Sprintf("k%03d", i)))
		if err != nil || !r.Found || string(r.Entry.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%03d after recovery: %+v, %v", i, r, err)
		}
	}
	if _, err := sc.Put(ctx, []byte("after-recovery"), []byte("x")); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}

	// Grow again with a fresh node.
	fresh := newProc(t, "n4", "--bootstrap", "false", "--join", survivor.gossipAddr)
	fresh.launch()
	res, err := sc.AddMember(ctx, &kv.AddMemberRequest{NodeID: fresh.id, RaftAddr: fresh.raftAddr})
	if err != nil || res.GetSuffrage() != kv.Suffrage_VOTER {
		t.Fatalf("add n4: %+v, %v", res, err)
	}
	topo, err := sc.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range topo.Members {
		if m.GetSuffrage() == kv.Suffrage_VOTER {
			voters++
		}
	}
	if voters != 2 {
		t.Fatalf("%d voters after growing, want 2 (survivor and n4): %+v", voters, topo.Members)
	}
	// Running it again on a node that is up refuses (the database is locked)
	// rather than rewriting a live cluster.
	if out, err := exec.Command(kvnodeBin, append(survivor.args(), "--force-new-cluster")...).CombinedOutput(); err == nil {
		t.Fatalf("force-new-cluster on a running node succeeded: %s", out)
	}
}
