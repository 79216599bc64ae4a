package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

func testLogger(t testing.TB, id string) *slog.Logger {
	t.Helper()
	return testutil.Logger(t, slog.LevelInfo).With("node_id", id)
}

// fastConfig is the in-memory test preset (InmemConfig) with logs sent to
// t.Log.
func fastConfig(t testing.TB, id string, trans raft.Transport) *Config {
	return InmemConfig(id, trans, testLogger(t, id))
}

type cluster struct {
	nodes  []*Node
	trans  []*raft.InmemTransport
	byAddr map[raft.ServerAddress]int

	mu  sync.Mutex
	cut map[[2]int]bool // [from, to] pairs whose Remote calls fail
}

// mustCluster starts n in-memory nodes bootstrapped as one cluster.
func mustCluster(t testing.TB, n int) *cluster {
	t.Helper()
	return mustClusterWith(t, n, nil)
}

// mustClusterWith is mustCluster with tweak applied to node i's Config
// before it is built (tweak may be nil).
func mustClusterWith(t testing.TB, n int, tweak func(i int, cfg *Config)) *cluster {
	t.Helper()
	c := &cluster{byAddr: map[raft.ServerAddress]int{}, cut: map[[2]int]bool{}}
	var peers []Peer
	for i := 0; i < n; i++ {
		addr, tr := raft.NewInmemTransport("")
		c.trans = append(c.trans, tr)
		c.byAddr[addr] = i
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), RaftAddr: string(addr)})
	}
	for i := range c.trans {
		for j := range c.trans {
			if i != j {
				c.trans[i].Connect(c.trans[j].LocalAddr(), c.trans[j])
			}
		}
	}
	for i := 0; i < n; i++ {
		cfg := fastConfig(t, peers[i].ID, c.trans[i])
		cfg.Remote = &clusterRemote{c: c, from: i}
		if n == 1 {
			cfg.Bootstrap = true
		} else {
			cfg.InitialCluster = peers
		}
		if tweak != nil {
			tweak(i, cfg)
		}
		nd, err := New(cfg)
		if err != nil {
			t.Fatalf("new node: %v", err)
		}
		if err := nd.Open(); err != nil {
			t.Fatalf("open node: %v", err)
		}
		c.mu.Lock()
		c.nodes = append(c.nodes, nd)
		c.mu.Unlock()
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			_ = nd.Close()
		}
	})
	return c
}

// isolate cuts node i off from the others, both its Raft transport and its
// Remote calls, in both directions.
func (c *cluster) isolate(i int) {
	c.trans[i].DisconnectAll()
	c.mu.Lock()
	defer c.mu.Unlock()
	for j, tr := range c.trans {
		if j != i {
			tr.Disconnect(c.trans[i].LocalAddr())
			c.cut[[2]int{i, j}] = true
			c.cut[[2]int{j, i}] = true
		}
	}
}

// clusterRemote is a node.Remote over the in-memory cluster: LeaderView
// asks the target node directly (unless the pair is cut); Apply and
// ReadIndex do not forward, as server.PeerClient when it knows no address
// for the leader.
type clusterRemote struct {
	c    *cluster
	from int
}

func (r *clusterRemote) target(id string) (*Node, error) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	for j, nd := range r.c.nodes {
		if nd.ID() == id {
			if r.c.cut[[2]int{r.from, j}] {
				return nil, fmt.Errorf("%w: %s unreachable", ErrUnavailable, id)
			}
			return nd, nil
		}
	}
	return nil, fmt.Errorf("%w: %s unknown", ErrUnavailable, id)
}

func (r *clusterRemote) LeaderView(_ context.Context, id string) (uint64, string, error) {
	nd, err := r.target(id)
	if err != nil {
		return 0, "", err
	}
	term, leader := nd.LeaderView()
	return term, leader, nil
}

func (r *clusterRemote) ReadIndex(_ context.Context, leaderID string) (uint64, error) {
	return 0, &NotLeaderError{LeaderID: leaderID}
}

func (r *clusterRemote) Apply(_ context.Context, leaderID string, _ *kv.Command) (*kv.WriteResult_, error) {
	return nil, &NotLeaderError{LeaderID: leaderID}
}

// mustLeader polls until one node is a leader ready for reads.
func (c *cluster) mustLeader(t testing.TB) *Node {
	t.Helper()
	var leader *Node
	testutil.WaitFor(t, 10*time.Second, "a ready leader", func() bool {
		for _, nd := range c.nodes {
			if nd.Status().Role == RoleLeader && nd.readyTerm.Load() == nd.raft.CurrentTerm() {
				leader = nd
				return true
			}
		}
		return false
	})
	return leader
}

func put(key, value string) *kv.Command {
	return &kv.Command{Op: kv.CommandOp_PUT, Key: []byte(key), Value: []byte(value)}
}

func TestNode_SingleApplyAndRead(t *testing.T) {
	c := mustCluster(t, 1)
	n := c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := n.Apply(ctx, put("a", "1"))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if res.Index == 0 || uint64(res.Index) > n.FSM().AppliedIndex() {
		t.Fatalf("result index %d, fsm applied %d", res.Index, n.FSM().AppliedIndex())
	}
	e, found, info, err := n.Get(ctx, []byte("a"), kv.Consistency_LINEARIZABLE)
	if err != nil || !found || string(e.Value) != "1" || e.ModIndex != uint64(res.Index) {
		t.Fatalf("get = %+v %v %v", e, found, err)
	}
	if info.AppliedIndex < uint64(res.Index) || info.LastContact != 0 || info.NodeID != "n1" {
		t.Fatalf("read info = %+v", info)
	}
	_, found, _, err = n.Get(ctx, []byte("missing"), kv.Consistency_STALE)
	if err != nil || found {
		t.Fatalf("stale get of missing key = %v, %v", found, err)
	}
	entries, more, _, err := n.Scan(ctx, nil, nil, false, 10, false, kv.Consistency_LINEARIZABLE)
	if err != nil || more || len(entries) != 1 {
		t.Fatalf("scan = %d entries, more %v, %v", len(entries), more, err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := n.Apply(ctx, put("b", "2")); !errors.Is(err, ErrShutdown) {
		t.Fatalf("apply after close = %v, want ErrShutdown", err)
	}
}

// gatedRemote counts the leadership questions (LeaderView calls) its node
// asks and, while gate is set, holds them until it is closed.
type gatedRemote struct {
	*clusterRemote
	asked atomic.Int64
	held  atomic.Int64

	mu   sync.Mutex
	gate chan struct{}
}

func (g *gatedRemote) LeaderView(ctx context.Context, id string) (uint64, string, error) {
	g.asked.Add(1)
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.held.Add(1)
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, "", fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
		}
	}
	return g.clusterRemote.LeaderView(ctx, id)
}

func (g *gatedRemote) setGate(gate chan struct{}) {
	g.mu.Lock()
	g.gate = gate
	g.mu.Unlock()
}

func TestNode_ConcurrentReadsShareVerification(t *testing.T) {
	remotes := map[string]*gatedRemote{}
	c := mustClusterWith(t, 3, func(_ int, cfg *Config) {
		// A round times out after HeartbeatTimeout: long enough here for
		// the held round to wait until the other readers arrive.
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = time.Second, time.Second, time.Second
		g := &gatedRemote{clusterRemote: cfg.Remote.(*clusterRemote)}
		remotes[cfg.ID] = g
		cfg.Remote = g
	})
	n := c.mustLeader(t)
	r := remotes[n.ID()]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testutil.Concurrently(t, 16, func(w int) error {
		for i := 0; i < 20; i++ {
			key := fmt.Sprintf("k%d-%d", w, i)
			res, err := n.Apply(ctx, put(key, "v"))
			if err != nil {
				return err
			}
			// A linearizable read after an acknowledged write sees it.
			e, found, _, err := n.Get(ctx, []byte(key), kv.Consistency_LINEARIZABLE)
			if err != nil || !found || e.ModIndex != uint64(res.Index) {
				return fmt.Errorf("read %s after write at %d: found=%v mod=%d err=%v", key, res.Index, found, e.ModIndex, err)
			}
		}
		return nil
	})

	// Reads that arrive while a verification is under way share the next
	// one. Hold the first round's questions until every other reader waits
	// for the next round, then release: two rounds serve all the reads,
	// and each round asks each of the two other voters at most once.
	const reads = 32
	gate := make(chan struct{})
	r.setGate(gate)
	asked0 := r.asked.Load()
	rerrs := make(chan error, reads)
	var rg sync.WaitGroup
	for i := 0; i < reads; i++ {
		if i == 1 {
			testutil.WaitFor(t, 5*time.Second, "the first round's questions", func() bool { return r.held.Load() > 0 })
		}
		rg.Add(1)
		go func() {
			defer rg.Done()
			e, found, _, err := n.Get(ctx, []byte("k0-0"), kv.Consistency_LINEARIZABLE)
			if err != nil || !found || string(e.Value) != "v" {
				rerrs <- fmt.Errorf("read during shared verification: %+v %v %v", e, found, err)
			}
		}()
	}
	testutil.WaitFor(t, 5*time.Second, "every reader to wait for a verification", func() bool {
		return waitingInReadIndex() == reads
	})
	r.setGate(nil)
	close(gate)
	rg.Wait()
	close(rerrs)
	for err := range rerrs {
		t.Fatal(err)
	}
	if asked := r.asked.Load() - asked0; asked > 2*2 {
		t.Fatalf("%d concurrent linearizable reads asked %d leadership questions, want at most 4 (two shared rounds)", reads, asked)
	}
}

// waitingInReadIndex counts the goroutines blocked in Node.ReadIndex,
// waiting for their batch's verification.
func waitingInReadIndex() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, " [select") && strings.Contains(g, "node.(*Node).ReadIndex(") {
			count++
		}
	}
	return count
}

func TestNode_FollowerRefusesWithLeaderHint(t *testing.T) {
	c := mustCluster(t, 3)
	leader := c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := leader.Apply(ctx, put("a", "1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes {
		if nd == leader {
			continue
		}
		_, err := nd.Apply(ctx, put("b", "2"))
		var nl *NotLeaderError
		if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) || nl.LeaderID != leader.ID() {
			t.Fatalf("follower apply err = %v, want NotLeaderError naming %s", err, leader.ID())
		}
		// Follower linearizable reads need the leader's read index, which
		// a later change adds; today they are refused, never served stale.
		if _, _, _, err := nd.Get(ctx, []byte("a"), kv.Consistency_LINEARIZABLE); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower linearizable read err = %v, want ErrNotLeader", err)
		}
		// A STALE read is served locally once the follower has applied it.
		if err := nd.FSM().WaitApplied(ctx, uint64(res.Index)); err != nil {
			t.Fatal(err)
		}
		e, found, info, err := nd.Get(ctx, []byte("a"), kv.Consistency_STALE)
		if err != nil || !found || string(e.Value) != "1" || info.Consistency != kv.Consistency_STALE || info.LastContact < 0 {
			t.Fatalf("follower stale read = %+v %v %+v %v", e, found, info, err)
		}
	}
}

func TestNode_IsolatedLeaderRefusesLinearizableReads(t *testing.T) {
	c := mustCluster(t, 3)
	leader := c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := leader.Apply(ctx, put("a", "1")); err != nil {
		t.Fatal(err)
	}
	c.isolate(c.byAddr[leader.trans.LocalAddr()])
	// Every linearizable read after the cut must be refused, well within
	// the deadline.
	deadline := time.Now().Add(3 * time.Second)
	refused := 0
	for refused < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("isolated leader still served linearizable reads 3s after the cut (%d refusals)", refused)
		}
		rctx, rcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		start := time.Now()
		_, _, _, err := leader.Get(rctx, []byte("a"), kv.Consistency_LINEARIZABLE)
		rcancel()
		switch {
		case err == nil:
			t.Fatalf("isolated leader served a linearizable read after the cut (%d refusals before)", refused)
		case !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoLeader):
			t.Fatalf("err = %v, want unavailable or not leader", err)
		case time.Since(start) > time.Second:
			t.Fatalf("refusal took %v, want within the 500ms read deadline", time.Since(start))
		}
		refused++
	}
	// The stale read still answers from local state.
	e, found, info, err := leader.Get(context.Background(), []byte("a"), kv.Consistency_STALE)
	if err != nil || !found || string(e.Value) != "1" || info.Consistency != kv.Consistency_STALE {
		t.Fatalf("stale read on isolated leader = %+v %v %+v %v", e, found, info, err)
	}
}

func TestConfig_Validate(t *testing.T) {
	ok := func() *Config {
		c := DefaultConfig()
		c.ID, c.DataDir, c.RaftAddr = "n1", "/tmp/x", "127.0.0.1:9091"
		return c
	}
	cases := []struct {
		name string
		mut  func(c *Config)
	}{
		{"no id", func(c *Config) { c.ID = "" }},
		{"no data dir", func(c *Config) { c.DataDir = "" }},
		{"no raft addr", func(c *Config) { c.RaftAddr = "" }},
		{"unspecified advertise", func(c *Config) { c.RaftAddr = "0.0.0.0:9091" }},
		{"bootstrap and cluster", func(c *Config) { c.Bootstrap = true; c.InitialCluster = []Peer{{"n1", "127.0.0.1:1"}} }},
		{"cluster without self", func(c *Config) { c.InitialCluster = []Peer{{"n2", "127.0.0.1:1"}} }},
		{"duplicate member", func(c *Config) { c.InitialCluster = []Peer{{"n1", "127.0.0.1:1"}, {"n1", "127.0.0.1:2"}} }},
	}
	if err := ok().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.mut(c)
			if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
				t.Fatalf("Validate = %v, want ErrBadConfig", err)
			}
		})
	}
}

func TestNode_ProposerCoalescesAndKeepsPerCommandResults(t *testing.T) {
	c := mustCluster(t, 3)
	n := c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	entries0, cmds0 := n.BatchStats()
	const writers, each = 32, 20
	testutil.Concurrently(t, writers, func(w int) error {
		client := int64(1000 + w)
		for i := 1; i <= each; i++ {
			key := fmt.Sprintf("w%02d", w)
			seq := int64(i)
			cmd := &kv.Command{Op: kv.CommandOp_PUT, Key: []byte(key), Value: []byte(fmt.Sprint(i)), ClientID: &client, Sequence: &seq}
			res, err := n.Apply(ctx, cmd)
			if err != nil {
				return err
			}
			// The retry of the same request id answers the same result.
			again, err := n.Apply(ctx, cmd)
			if err != nil || again.Index != res.Index {
				return fmt.Errorf("retry of %d:%d answered %+v, %v; first was at %d", client, i, again, err, res.Index)
			}
			e, _, _ := n.FSM().Get([]byte(key))
			if e.ModIndex < uint64(res.Index) {
				return fmt.Errorf("%s at %d after a write acknowledged at %d", key, e.ModIndex, res.Index)
			}
		}
		return nil
	})
	entries, cmds := n.BatchStats()
	entries, cmds = entries-entries0, cmds-cmds0
	if cmds != 2*writers*each {
		t.Fatalf("proposer carried %d commands, want %d", cmds, 2*writers*each)
	}
	if entries >= cmds {
		t.Fatalf("no coalescing: %d entries for %d commands", entries, cmds)
	}
	t.Logf("%d commands in %d log entries (%.1f per entry)", cmds, entries, float64(cmds)/float64(entries))
	for w := 0; w < writers; w++ {
		e, ok, _ := n.FSM().Get([]byte(fmt.Sprintf("w%02d", w)))
		if !ok || string(e.Value) != fmt.Sprint(each) {
			t.Fatalf("w%02d = %q, want %d", w, e.Value, each)
		}
	}
}

func TestNode_ProposerNeverPutsTwoWritesOfAKeyInOneEntry(t *testing.T) {
	c := mustCluster(t, 1)
	n := c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Many concurrent writers of one key: every acknowledged write must have
	// its own mod_index, or a CAS on an index could overwrite a newer value.
	const writers, each = 16, 25
	var mu sync.Mutex
	seen := map[int64]string{}
	testutil.Concurrently(t, writers, func(w int) error {
		for i := 0; i < each; i++ {
			v := fmt.Sprintf("%d-%d", w, i)
			res, err := n.Apply(ctx, put("hot", v))
			if err != nil {
				return err
			}
			mu.Lock()
			if prev, dup := seen[res.Index]; dup {
				mu.Unlock()
				return fmt.Errorf("writes %s and %s of one key share mod_index %d", prev, v, res.Index)
			}
			seen[res.Index] = v
			mu.Unlock()
		}
		return nil
	})
	// Distinct keys still coalesce.
	entries0, cmds0 := n.BatchStats()
	testutil.Concurrently(t, writers, func(w int) error {
		for i := 0; i < each; i++ {
			if _, err := n.Apply(ctx, put(fmt.Sprintf("k%d-%d", w, i), "v")); err != nil {
				return err
			}
		}
		return nil
	})
	entries, cmds := n.BatchStats()
	if cmds-cmds0 <= entries-entries0 {
		t.Fatalf("distinct keys did not coalesce: %d commands in %d entries", cmds-cmds0, entries-entries0)
	}
}

func TestBatchKeys_ConflictsOnWrittenKeys(t *testing.T) {
	b := newBatchKeys()
	if !b.add(put("a", "1")) || !b.add(put("b", "1")) {
		t.Fatal("distinct keys conflicted")
	}
	if b.add(&kv.Command{Op: kv.CommandOp_CAS_PUT, Key: []byte("a"), Value: []byte("2")}) {
		t.Fatal("second write of a accepted")
	}
	txn := &kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{{Type: kv.OpType_GET, Key: []byte("z")}}, Failure: []*kv.Op{{Type: kv.OpType_DELETE, Key: []byte("b")}}}
	if b.add(txn) {
		t.Fatal("txn deleting b in its failure branch accepted")
	}
	if !b.add(&kv.Command{Op: kv.CommandOp_NOOP}) || !b.add(&kv.Command{Op: kv.CommandOp_TXN, Success: []*kv.Op{{Type: kv.OpType_GET, Key: []byte("a")}}}) {
		t.Fatal("commands writing nothing conflicted")
	}
}

// A write whose context has already ended is refused before it is queued:
// not applied (ErrUnavailable), never "outcome unknown", and nothing reaches
// the log.
func TestNode_ApplyWithEndedContextIsNotQueued(t *testing.T) {
	c := mustCluster(t, 1)
	n := c.mustLeader(t)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	entries0, cmds0 := n.BatchStats()
	for i := range 50 {
		_, err := n.Apply(ended, put("gone", fmt.Sprint(i)))
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrTimeout) {
			t.Fatalf("apply %d with an ended context = %v, want ErrUnavailable", i, err)
		}
	}
	if entries, cmds := n.BatchStats(); entries != entries0 || cmds != cmds0 {
		t.Fatalf("proposer carried %d commands in %d entries, want none", cmds-cmds0, entries-entries0)
	}
	if _, found, _ := n.FSM().Get([]byte("gone")); found {
		t.Fatal("a write refused before it was queued was applied")
	}
}

// A lease's id is the index of the entry that grants it, so an entry never
// carries two grants (a LEASE_GRANT or a PUT with ttl_ms): the second would
// get the same id and replace the first.
func TestBatchKeys_OneGrantPerEntry(t *testing.T) {
	ttl := int64(1000)
	grant := &kv.Command{Op: kv.CommandOp_LEASE_GRANT, TTLMs: &ttl}
	ttlPut := &kv.Command{Op: kv.CommandOp_PUT, Key: []byte("t"), Value: []byte("v"), TTLMs: &ttl}
	b := newBatchKeys()
	if !b.add(grant) {
		t.Fatal("first grant refused")
	}
	if b.add(grant) || b.add(ttlPut) {
		t.Fatal("a second grant shares the entry")
	}
	if !b.add(put("a", "1")) {
		t.Fatal("a put without ttl_ms refused beside a grant")
	}
	b = newBatchKeys()
	if !b.add(ttlPut) || b.add(grant) {
		t.Fatal("a PUT with ttl_ms and a LEASE_GRANT share the entry")
	}
}

// Many concurrent grants, coalesced as the proposer does under load: every
// grant gets a lease of its own, with its own TTL.
func TestNode_ConcurrentGrantsGetDistinctLeases(t *testing.T) {
	c := mustCluster(t, 1)
	n := c.mustLeader(t)
	ctx := context.Background()
	const writers, each = 16, 20
	var mu sync.Mutex
	ids := map[int64]int64{} // lease id -> ttl asked for
	testutil.Concurrently(t, writers, func(w int) error {
		for i := range each {
			ttl := int64(60_000 + w*each + i)
			cmd := &kv.Command{Op: kv.CommandOp_LEASE_GRANT, TTLMs: &ttl}
			if i%2 == 1 {
				cmd = &kv.Command{Op: kv.CommandOp_PUT, Key: []byte(fmt.Sprintf("g%d-%d", w, i)), Value: []byte("v"), TTLMs: &ttl}
			}
			res, err := n.Apply(ctx, cmd)
			if err != nil {
				return err
			}
			mu.Lock()
			if prev, dup := ids[res.Index]; dup {
				mu.Unlock()
				return fmt.Errorf("lease %d granted twice (ttl %d and %d)", res.Index, prev, ttl)
			}
			ids[res.Index] = ttl
			mu.Unlock()
		}
		return nil
	})
	if got := n.FSM().LeaseCount(); got != writers*each {
		t.Fatalf("%d leases, want %d", got, writers*each)
	}
	for id, ttl := range ids {
		l, ok, _ := n.FSM().Lease(uint64(id))
		if !ok || l.TTL != ttl {
			t.Fatalf("lease %d: %+v %v, want ttl %d", id, l, ok, ttl)
		}
	}
}
