package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// lastCall returns the last recorded call of method at s, failing the test when there is none.
func lastCall(t *testing.T, s *clienttest.Server, method string) clienttest.Call {
	t.Helper()
	calls := s.Calls()
	for i := len(calls) - 1; i >= 0; i-- {
		if calls[i].Method == method {
			return calls[i]
		}
	}
	t.Fatalf("%s saw no %s call", s.NodeID(), method)
	return clienttest.Call{}
}

// hasMember reports whether the cluster's topology holds id with the given suffrage.
func hasMember(cl *clienttest.Cluster, id string, s kv.Suffrage) bool {
	for _, m := range cl.Topology().Members {
		if m.NodeID == id {
			return m.GetSuffrage() == s
		}
	}
	return false
}

func TestKvctl_MemberList(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	cl.SetLeader("n2")
	cl.Update(func(topo *kv.Topology) {
		topo.Members = append(topo.Members, &kv.Member{NodeID: "n4", RaftAddr: "10.0.0.4:9091",
			Suffrage: kv.SuffragePtr(kv.Suffrage_NONVOTER), GossipState: kv.GossipState_UNKNOWN, AppliedIndex: -1, LastContactMs: -1})
	})
	ep := "--endpoints=" + cl.Server("n1").Addr

	code, stdout, stderr := mustRun(t, "", ep, "member", "list")
	if code != exitOK {
		t.Fatalf("member list: exit %d, stderr %q", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 5 {
		t.Fatalf("member list printed:\n%s\nwant a header and 4 rows", stdout)
	}
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "ID SUFFRAGE LEADER GOSSIP THRIFT RAFT APPLIED LAST-CONTACT" {
		t.Fatalf("header %q", got)
	}
	want := [][]string{
		{"n1", "voter", "alive", cl.Server("n1").Addr, "raft-n1:9091"},
		{"n2", "voter", "*", "alive", cl.Server("n2").Addr, "raft-n2:9091"},
		{"n3", "voter", "alive", cl.Server("n3").Addr, "raft-n3:9091"},
		{"n4", "nonvoter", "unknown", "-", "10.0.0.4:9091", "-", "-"},
	}
	for i, w := range want {
		f := strings.Fields(lines[i+1])
		if len(f) < len(w) || strings.Join(f[:len(w)], " ") != strings.Join(w, " ") {
			t.Fatalf("row %d = %q, want it to start with %v", i, lines[i+1], w)
		}
	}

	code, stdout, stderr = mustRun(t, "", ep, "-o", "json", "member", "list")
	if code != exitOK {
		t.Fatalf("member list -o json: exit %d, stderr %q", code, stderr)
	}
	var got struct {
		LeaderID string `json:"leader_id"`
		ServedBy string `json:"served_by"`
		Members  []struct {
			NodeID     string `json:"node_id"`
			Suffrage   string `json:"suffrage"`
			Leader     bool   `json:"leader"`
			Gossip     string `json:"gossip"`
			ThriftAddr string `json:"thrift_addr"`
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("member list JSON %q: %v", stdout, err)
	}
	if got.LeaderID != "n2" || got.ServedBy == "" || len(got.Members) != 4 || !got.Members[1].Leader ||
		got.Members[3].Suffrage != "nonvoter" || got.Members[3].Gossip != "unknown" || got.Members[0].ThriftAddr != cl.Server("n1").Addr {
		t.Fatalf("member list JSON: %+v", got)
	}

	// No node answering is a server error.
	if code, _, _ := mustRun(t, "", "--endpoints="+testutil.DeadAddr(t), "--timeout=1s", "member", "list"); code != exitServerError {
		t.Fatalf("member list from a dead endpoint: exit %d, want %d", code, exitServerError)
	}
}

func TestKvctl_MemberAddPromoteRemove(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	leader := cl.Server("n1")
	// Named endpoint is a follower: the changes must reach the leader.
	ep := "--endpoints=" + cl.Server("n3").Addr

	code, stdout, stderr := mustRun(t, "", ep, "member", "add", "n4", "10.0.0.4:9091", "--catchup-timeout", "30s")
	if code != exitOK || !strings.HasPrefix(stdout, "OK index=") || !strings.HasSuffix(stdout, " suffrage=voter\n") {
		t.Fatalf("member add: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	req, ok := lastCall(t, leader, "add_member").Request.(*kv.AddMemberRequest)
	if !ok || req.NodeID != "n4" || req.RaftAddr != "10.0.0.4:9091" || req.GetCatchupTimeoutMs() != 30000 || req.GetNonvoter() {
		t.Fatalf("leader got add_member %+v, want n4 at 10.0.0.4:9091, catch-up 30000 ms, voter", req)
	}
	if !hasMember(cl, "n4", kv.Suffrage_VOTER) {
		t.Fatalf("n4 not a voter after member add: %v", cl.Topology())
	}

	code, stdout, _ = mustRun(t, "", ep, "-o", "json", "member", "add", "n5", "10.0.0.5:9091", "--nonvoter")
	var change struct {
		Index    int64
		Suffrage string
	}
	if err := json.Unmarshal([]byte(stdout), &change); code != exitOK || err != nil || change.Index <= 0 || change.Suffrage != "nonvoter" {
		t.Fatalf("member add --nonvoter: exit %d, stdout %q (%v)", code, stdout, err)
	}
	if req := lastCall(t, leader, "add_member").Request.(*kv.AddMemberRequest); req.GetCatchupTimeoutMs() != 60000 || !req.GetNonvoter() {
		t.Fatalf("leader got add_member %+v, want the default catch-up 60000 ms and nonvoter", req)
	}

	code, stdout, stderr = mustRun(t, "", ep, "member", "promote", "n5", "--catchup-timeout=5s")
	if code != exitOK || !strings.HasSuffix(stdout, " suffrage=voter\n") || !hasMember(cl, "n5", kv.Suffrage_VOTER) {
		t.Fatalf("member promote: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if req := lastCall(t, leader, "promote_member").Request.(*kv.PromoteMemberRequest); req.GetCatchupTimeoutMs() != 5000 {
		t.Fatalf("leader got promote_member %+v, want catch-up 5000 ms", req)
	}

	code, stdout, stderr = mustRun(t, "", ep, "member", "remove", "n4")
	if code != exitOK || !strings.HasPrefix(stdout, "OK index=") || strings.Contains(stdout, "suffrage") {
		t.Fatalf("member remove: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if hasMember(cl, "n4", kv.Suffrage_VOTER) {
		t.Fatal("n4 still a member after member remove")
	}
	for _, m := range []string{"add_member", "promote_member", "remove_member"} {
		if n := countCalls(cl.Server("n3"), m) + countCalls(cl.Server("n2"), m); n != 0 {
			t.Fatalf("followers saw %d %s calls, want 0", n, m)
		}
	}

	tests := []struct {
		name string
		args []string
		want int
	}{
		{"remove unknown member", []string{ep, "member", "remove", "nope"}, exitBadArgs},
		{"add without raft address", []string{ep, "member", "add", "n6"}, exitBadArgs},
		{"zero catch-up", []string{ep, "member", "add", "n6", "10.0.0.6:9091", "--catchup-timeout=0s"}, exitBadArgs},
		{"promote without id", []string{ep, "member", "promote"}, exitBadArgs},
		{"unknown member subcommand", []string{ep, "member", "frob"}, exitBadArgs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, stdout, stderr := mustRun(t, "", tt.args...); code != tt.want {
				t.Fatalf("exit %d, want %d (stdout %q, stderr %q)", code, tt.want, stdout, stderr)
			}
		})
	}
}

// countCalls returns how many calls of method s saw.
func countCalls(s *clienttest.Server, method string) int {
	n := 0
	for _, c := range s.Calls() {
		if c.Method == method {
			n++
		}
	}
	return n
}

func TestKvctl_MemberAddOutlastsTimeoutFlag(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1")
	n1 := cl.Server("n1")
	const slow = 500 * time.Millisecond
	n1.SetHook(func(ctx context.Context, c clienttest.Call) error {
		select { // a change that takes longer than --timeout
		case <-time.After(slow):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	ep := "--endpoints=" + n1.Addr
	// member add waits for the catch-up, so --timeout does not cut it short ...
	if code, stdout, stderr := mustRun(t, "", ep, "--timeout=100ms", "member", "add", "n2", "10.0.0.2:9091"); code != exitOK {
		t.Fatalf("member add: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	// ... while member remove keeps to it.
	if code, _, stderr := mustRun(t, "", ep, "--timeout=100ms", "member", "remove", "n2"); code != exitServerError {
		t.Fatalf("member remove past --timeout: exit %d, want %d (stderr %q)", code, exitServerError, stderr)
	}

	g := defaultGlobalOptions()
	if got := g.membershipTimeout(60 * time.Second); got != 75*time.Second {
		t.Fatalf("membershipTimeout(60s) with --timeout 5s = %v, want 75s", got)
	}
	g.timeout = 5 * time.Minute
	if got := g.membershipTimeout(60 * time.Second); got != 5*time.Minute {
		t.Fatalf("membershipTimeout(60s) with --timeout 5m = %v, want 5m", got)
	}
}

func TestKvctl_LeaderTransfer(t *testing.T) {
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	ep := "--endpoints=" + cl.Server("n2").Addr

	code, stdout, stderr := mustRun(t, "", ep, "leader", "transfer", "n3")
	if code != exitOK || !strings.HasPrefix(stdout, "OK leader=n3 term=") {
		t.Fatalf("leader transfer n3: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if l := cl.Leader(); l == nil || l.NodeID() != "n3" {
		t.Fatalf("leader after the transfer: %v, want n3", cl.Topology().LeaderID)
	}
	if n := countCalls(cl.Server("n1"), "transfer_leadership"); n != 1 {
		t.Fatalf("the leader n1 saw %d transfer calls, want 1", n)
	}

	code, stdout, stderr = mustRun(t, "", ep, "-o", "json", "leader", "transfer")
	var got struct {
		LeaderID string `json:"leader_id"`
		Term     int64
	}
	if err := json.Unmarshal([]byte(stdout), &got); code != exitOK || err != nil || got.LeaderID == "" || got.LeaderID == "n3" {
		t.Fatalf("leader transfer to any voter: exit %d, stdout %q, stderr %q (%v)", code, stdout, stderr, err)
	}
	if req := lastCall(t, cl.Server("n3"), "transfer_leadership").Request.(*kv.TransferLeadershipRequest); req.NodeID != nil {
		t.Fatalf("transfer without an id sent node id %q", req.GetNodeID())
	}

	if code, _, _ := mustRun(t, "", ep, "leader", "transfer", "nope"); code != exitBadArgs {
		t.Fatalf("leader transfer to a non-member: exit %d, want %d", code, exitBadArgs)
	}
	if code, _, _ := mustRun(t, "", ep, "leader", "transfer", "n1", "n2"); code != exitBadArgs {
		t.Fatalf("leader transfer with two ids: exit %d, want %d", code, exitBadArgs)
	}
}
