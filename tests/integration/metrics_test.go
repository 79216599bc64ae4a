package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
)

// scrape reads a node's /metrics and sums each metric name's samples whose
// labels contain every given label fragment.
func scrape(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	hc, base := p.admin()
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", p.id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] += v
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			out[name[:j]] += v
		}
	}
	return out
}

// TestMetrics_ScrapedAndMoving scrapes /metrics on a follower and the leader
// before and after traffic through the follower: the named metrics are
// present and move with the requests.
func TestMetrics_ScrapedAndMoving(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-threshold", "64", "--snapshot-interval", "200ms", "--trailing-logs", "32")
	leader := c.waitLeader(10 * time.Second)
	f := c.followers(leader)[0]
	before := scrape(t, f)
	conn := rawConn(t, f.thriftAddr)
	for i := 0; i < 100; i++ {
		if _, err := kvCall(t, conn, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.PutResponse, error) {
			return k.Put(ctx, &kv.PutRequest{Key: []byte(fmt.Sprintf("m%03d", i)), Value: []byte("v")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		if _, err := kvCall(t, conn, 10*time.Second, func(ctx context.Context, k *kv.KVClient) (*kv.GetResponse, error) {
			return k.Get(ctx, &kv.GetRequest{Key: []byte("m000")})
		}); err != nil {
			t.Fatal(err)
		}
	}
	after := scrape(t, f)
	moved := []struct {
		series string
		by     float64
	}{
		{`cubekv_requests_total{method="put",outcome="ok"}`, 100},
		{`cubekv_requests_total{method="get",outcome="ok"}`, 10},
		{`cubekv_request_duration_seconds_count{method="put"}`, 100},
		{`cubekv_forwarded_writes_total`, 100},
		{`cubekv_read_index_duration_seconds_count{outcome="ok",path="remote"}`, 10},
		{`cubekv_engine_keys`, 100},
		{`cubekv_applied_index`, 100},
	}
	for _, m := range moved {
		if d := after[m.series] - before[m.series]; d < m.by {
			t.Errorf("%s moved by %v, want at least %v", m.series, d, m.by)
		}
	}
	// The leader proposed the forwarded writes and took a snapshot.
	var lm map[string]float64
	eventually(t, 10*time.Second, "a snapshot duration recorded on the leader", func() (bool, string) {
		lm = scrape(t, leader)
		return lm["cubekv_raft_snapshot_persist_count"] > 0, "none"
	})
	for _, name := range []string{
		"cubekv_proposal_commands_count", "cubekv_engine_bytes", "cubekv_is_leader", "cubekv_thrift_open_connections",
		"cubekv_raft_commitTime_count", "cubekv_raft_apply", "cubekv_memberlist_gossip_count", "go_goroutines", "process_resident_memory_bytes",
	} {
		if _, ok := lm[name]; !ok {
			t.Errorf("leader's /metrics lacks %s", name)
		}
	}
	if lm["cubekv_is_leader"] != 1 || lm["cubekv_engine_bytes"] <= 0 {
		t.Errorf("leader gauges: is_leader=%v engine_bytes=%v", lm["cubekv_is_leader"], lm["cubekv_engine_bytes"])
	}
}

func readyStatus(t *testing.T, p *proc) int {
	t.Helper()
	hc, base := p.admin()
	resp, err := hc.Get(base + "/ready")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReady_FalseWhenCutOffTrueAfterCatchingUp stops the other two nodes:
// the remaining follower is not ready (it cannot confirm it has what the
// leader committed), and is ready again once they are back and it has caught
// up with writes made meanwhile.
func TestReady_FalseWhenCutOffTrueAfterCatchingUp(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(10 * time.Second)
	fs := c.followers(leader)
	cut, other := fs[0], fs[1]
	if code := readyStatus(t, cut); code != 200 {
		t.Fatalf("/ready = %d before the cut", code)
	}
	leader.pause()
	other.pause()
	eventually(t, 10*time.Second, "/ready false on "+cut.id+" once cut off", func() (bool, string) {
		code := readyStatus(t, cut)
		return code != 200, fmt.Sprint(code)
	})
	// Bring the others back, but keep cut stopped while they take writes,
	// so it must catch up before it is ready.
	cut.pause()
	leader.resume()
	other.resume()
	next := c.waitLeader(15*time.Second, cut)
	// The writer talks to the two running nodes only: with discovery it
	// would also try the stopped one, and an attempt there waits out the
	// whole per-call socket timeout.
	live := []string{next.thriftAddr}
	for _, p := range c.followers(cut) {
		if p != next {
			live = append(live, p.thriftAddr)
		}
	}
	w, err := client.New(client.Config{Endpoints: live, DisableDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	for i := 0; i < 50; i++ {
		if _, err := w.Put(ctxTimeout(t, 10*time.Second), []byte(fmt.Sprintf("while-away-%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	cut.resume()
	eventually(t, 20*time.Second, "/ready true on "+cut.id+" after the others came back", func() (bool, string) {
		code := readyStatus(t, cut)
		return code == 200, fmt.Sprint(code)
	})
	st, err := adminStatus(cut)
	if err != nil {
		t.Fatal(err)
	}
	if keys := st["keys"].(float64); keys < 50 {
		t.Fatalf("%s ready with %v keys, want the 50 written while it was away", cut.id, keys)
	}
}
