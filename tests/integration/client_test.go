package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
)

// kvctlBuild builds kvctl once per test binary, next to the kvnode binary (TestMain removes that
// directory at the end).
var kvctlBuild struct {
	once sync.Once
	path string
	err  error
}

// mustKvctl returns the path of a freshly built kvctl.
func mustKvctl(t *testing.T) string {
	t.Helper()
	kvctlBuild.once.Do(func() {
		kvctlBuild.path = filepath.Join(filepath.Dir(kvnodeBin), "kvctl")
		out, err := exec.Command("go", "build", "-o", kvctlBuild.path, "github.com/cubekv/cubekv/cmd/kvctl").CombinedOutput()
		if err != nil {
			kvctlBuild.err = fmt.Errorf("build kvctl: %w\n%s", err, out)
		}
	})
	if kvctlBuild.err != nil {
		t.Fatal(kvctlBuild.err)
	}
	return kvctlBuild.path
}

// runKvctl runs kvctl with args and returns its exit code, stdout and stderr.
func runKvctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, mustKvctl(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatalf("run kvctl %v: %v", args, err)
	return -1, "", ""
}

// mustFullTopology polls the client's Topology until it lists every node of c, each with the Thrift
// address it serves on, led by leader; gossip may take a moment to spread the addresses.
func mustFullTopology(t *testing.T, cl *client.Client, c *testCluster, leader *proc) *kv.Topology {
	t.Helper()
	var topo *kv.Topology
	eventually(t, 30*time.Second, "a complete topology", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		topo, err = cl.Topology(ctx)
		if err != nil {
			return false, err.Error()
		}
		complete := len(topo.Members) == len(c.procs) && topo.LeaderID == leader.id
		for _, m := range topo.Members {
			p := c.byID(m.NodeID)
			complete = complete && m.ThriftAddr == p.thriftAddr && m.RaftAddr == p.raftAddr &&
				m.GossipState == kv.GossipState_ALIVE
		}
		return complete, fmt.Sprint(topo)
	})
	return topo
}

// mustWriteAndRead writes n keys with prefix through cl and reads each back linearizably.
func mustWriteAndRead(t *testing.T, cl *client.Client, prefix string, n int) {
	t.Helper()
	ctx := ctxTimeout(t, 2*time.Minute)
	indexes := make(map[string]int64, n)
	for i := range n {
		key := fmt.Sprintf("%s%04d", prefix, i)
		r, err := cl.Put(ctx, []byte(key), []byte("v-"+key))
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		indexes[key] = r.Index
	}
	for key, idx := range indexes {
		r, err := cl.Get(ctx, []byte(key))
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		if !r.Found || string(r.Entry.Value) != "v-"+key || r.Entry.ModIndex != idx {
			t.Fatalf("get %s = %+v, want v-%s at %d", key, r.Entry, key, idx)
		}
	}
}

// forwardedAll returns every node's forwarded counter by node id.
func forwardedAll(t *testing.T, c *testCluster) map[string]float64 {
	t.Helper()
	out := make(map[string]float64, len(c.procs))
	for _, p := range c.procs {
		out[p.id] = forwarded(t, p)
	}
	return out
}

// TestClient_DiscoversClusterFromOneSeed gives the client a single follower as its seed: it learns
// all three members and sends writes straight to the leader, so no node forwards any.
func TestClient_DiscoversClusterFromOneSeed(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	seed := c.followers(leader)[0]
	cl := mustClient(t, seed.thriftAddr)

	topo := mustFullTopology(t, cl, c, leader)
	if topo.ServedBy == "" || len(topo.Members) != 3 {
		t.Fatalf("topology %v", topo)
	}
	if got := cl.Leader(); got != leader.thriftAddr {
		t.Fatalf("Leader() = %q, want %s at %s", got, leader.id, leader.thriftAddr)
	}

	mustWriteAndRead(t, cl, "seed-", 200)
	for id, n := range forwardedAll(t, c) {
		if n != 0 {
			t.Fatalf("%s forwarded %v writes, want 0: the client must write to the leader %s itself", id, n, leader.id)
		}
	}
}

// TestClient_FollowsLeaderChange moves leadership with the client's TransferLeadership: writes keep
// succeeding and, once the client has refreshed, still need no forwarding.
func TestClient_FollowsLeaderChange(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	fs := c.followers(leader)
	seed, target := fs[0], fs[1]
	cl := mustClient(t, seed.thriftAddr)
	mustFullTopology(t, cl, c, leader)
	mustWriteAndRead(t, cl, "before-", 50)

	ctx := ctxTimeout(t, time.Minute)
	resp, err := cl.TransferLeadership(ctx, target.id)
	if err != nil {
		t.Fatalf("transfer leadership to %s: %v", target.id, err)
	}
	if resp.LeaderID != target.id {
		t.Fatalf("transfer: new leader %s, want %s", resp.LeaderID, target.id)
	}
	if got := cl.Leader(); got != target.thriftAddr {
		t.Fatalf("Leader() right after the transfer = %q, want %s at %s", got, target.id, target.thriftAddr)
	}
	// Writes right after the transfer succeed.
	mustWriteAndRead(t, cl, "during-", 20)

	mustFullTopology(t, cl, c, target)
	before := forwardedAll(t, c)
	mustWriteAndRead(t, cl, "after-", 200)
	after := forwardedAll(t, c)
	for id := range after {
		if after[id] != before[id] {
			t.Fatalf("%s forwarded %v writes after the client refreshed (%v before), want none", id, after[id]-before[id], before[id])
		}
	}
	if got := cl.Leader(); got != target.thriftAddr {
		t.Fatalf("Leader() = %q, want %s at %s", got, target.id, target.thriftAddr)
	}
}

// TestKvctl_MemberCommands runs the kvctl binary against a real cluster, naming one node only.
func TestKvctl_MemberCommands(t *testing.T) {
	mustKvctl(t) // build before the cluster starts, not while it runs
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	target := c.followers(leader)[1]
	ep := "--endpoints=" + c.followers(leader)[0].thriftAddr
	mustFullTopology(t, mustClient(t, leader.thriftAddr), c, leader)

	code, stdout, stderr := runKvctl(t, ep, "member", "list")
	if code != 0 {
		t.Fatalf("member list: exit %d, stderr %q", code, stderr)
	}
	t.Logf("kvctl member list:\n%s", stdout)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "ID SUFFRAGE LEADER GOSSIP THRIFT RAFT APPLIED LAST-CONTACT" {
		t.Fatalf("member list printed:\n%s\nwant a header and 3 rows", stdout)
	}
	for i, p := range c.procs {
		// A follower's LEADER column is empty, so its row has one field fewer; APPLIED is a number.
		want := fmt.Sprintf("%s voter alive %s %s ", p.id, p.thriftAddr, p.raftAddr)
		if p == leader {
			want = fmt.Sprintf("%s voter * alive %s %s ", p.id, p.thriftAddr, p.raftAddr)
		}
		f := strings.Fields(lines[i+1])
		if row := strings.Join(f, " "); !strings.HasPrefix(row, want) || len(f) != strings.Count(want, " ")+2 {
			t.Fatalf("member list row %q, want it to start with %q and end with APPLIED and LAST-CONTACT", row, want)
		}
		if p == leader && f[7] != "0s" {
			t.Fatalf("leader row %q: last contact %q, want 0s", lines[i+1], f[7])
		}
	}

	code, stdout, stderr = runKvctl(t, ep, "status")
	if code != 0 {
		t.Fatalf("status: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Logf("kvctl status:\n%s", stdout)
	lines = strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("status printed:\n%s\nwant a header and 3 rows", stdout)
	}
	for i, p := range c.procs {
		role := "FOLLOWER"
		if p == leader {
			role = "LEADER"
		}
		f := strings.Fields(lines[i+1])
		if len(f) != 10 || f[0] != p.id || f[1] != p.thriftAddr || f[2] != role || f[6] != leader.id || f[8] != "arena" {
			t.Fatalf("status row %q, want %s at %s, %s, led by %s, btree", lines[i+1], p.id, p.thriftAddr, role, leader.id)
		}
	}

	code, stdout, stderr = runKvctl(t, ep, "leader", "transfer", target.id)
	if code != 0 || !strings.HasPrefix(stdout, "OK leader="+target.id+" term=") {
		t.Fatalf("leader transfer %s: exit %d, stdout %q, stderr %q", target.id, code, stdout, stderr)
	}
	if now := c.waitLeader(10*time.Second, leader); now != target {
		t.Fatalf("leader after the transfer is %s, want %s", now.id, target.id)
	}

	// The members agree on the new leader soon after.
	eventually(t, 20*time.Second, "member list shows the new leader", func() (bool, string) {
		code, stdout, stderr = runKvctl(t, ep, "-o", "json", "member", "list")
		if code != 0 {
			t.Fatalf("member list -o json: exit %d, stderr %q", code, stderr)
		}
		var got struct {
			LeaderID string `json:"leader_id"`
			Members  []struct {
				NodeID string `json:"node_id"`
				Leader bool   `json:"leader"`
			} `json:"members"`
		}
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			t.Fatalf("member list JSON %q: %v", stdout, err)
		}
		return got.LeaderID == target.id && len(got.Members) == 3, stdout
	})

	if code, stdout, stderr := runKvctl(t, ep, "leader", "transfer", "nope"); code != 2 {
		t.Fatalf("leader transfer to a non-member: exit %d, want 2 (stdout %q, stderr %q)", code, stdout, stderr)
	}
	if code, _, stderr := runKvctl(t, ep, "member", "add", "n9"); code != 2 {
		t.Fatalf("member add without a raft address: exit %d, want 2 (stderr %q)", code, stderr)
	}
}
