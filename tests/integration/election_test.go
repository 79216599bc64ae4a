package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
)

// TestKvctl_PutRidesOutLeaderKill kills the leader with SIGKILL and at once
// runs `kvctl put --timeout 5s` naming every node: the client retries until
// its deadline, so the write succeeds once a new leader is elected (at the
// default timings an election takes 1.5-3 s).
func TestKvctl_PutRidesOutLeaderKill(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	var eps []string
	for _, p := range c.procs {
		eps = append(eps, p.thriftAddr)
	}
	mustKvctl(t) // built before the kill, so the election is not over by the time it runs
	leader.kill()
	start := time.Now()
	code, out, errOut := runKvctl(t, "--endpoints", strings.Join(eps, ","), "--timeout", "5s", "put", "during-election", "v1")
	if code != 0 {
		t.Fatalf("kvctl put --timeout 5s right after killing leader %s: exit %d after %v\n%s%s", leader.id, code, time.Since(start).Round(time.Millisecond), out, errOut)
	}
	t.Logf("put acknowledged %v after the leader was killed", time.Since(start).Round(time.Millisecond))
	follower := c.followers(leader)[0]
	code, out, errOut = runKvctl(t, "--endpoints", follower.thriftAddr, "--timeout", "10s", "get", "during-election")
	if code != 0 || strings.TrimSpace(out) != "v1" {
		t.Fatalf("kvctl get after the election: exit %d, %q %s", code, out, errOut)
	}
}

// TestKvctl_StaleReadServedByTheNodeAsked checks that a stale read names the
// node given in --endpoints as the one that served it, on every node.
func TestKvctl_StaleReadServedByTheNodeAsked(t *testing.T) {
	c := startCluster(t, 3)
	c.waitLeader(10 * time.Second)
	if code, out, errOut := runKvctl(t, "--endpoints", c.procs[0].thriftAddr, "--timeout", "10s", "put", "k", "v"); code != 0 {
		t.Fatalf("put: exit %d %s%s", code, out, errOut)
	}
	for _, p := range c.procs {
		// Each node applies the write in its own time: a stale read may miss
		// it (exit 1) for a moment.
		stale := func() (int, string, string) {
			return runKvctl(t, "--endpoints", p.thriftAddr, "--timeout", "10s", "-o", "json", "--consistency", "stale", "get", "k")
		}
		testutil.WaitFor(t, 10*time.Second, "a stale get on "+p.id+" finding k", func() bool {
			code, _, _ := stale()
			return code != 1
		})
		for read := 0; read < 3; read++ {
			code, out, errOut := stale()
			if code != 0 {
				t.Fatalf("stale get on %s: exit %d %s%s", p.id, code, out, errOut)
			}
			var got struct {
				NodeID string `json:"node_id"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("stale get on %s: %v in %q", p.id, err, out)
			}
			if got.NodeID != p.id {
				t.Fatalf("kvctl --endpoints %s (%s) --consistency stale get: served by %s", p.thriftAddr, p.id, got.NodeID)
			}
		}
	}
}
