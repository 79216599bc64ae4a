package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
)

// Snapshot settings that make snapshots frequent and the log short, so a
// few thousand writes compact it past a stopped follower.
var pebbleSnapFlags = []string{
	"--snapshot-threshold", "128", "--snapshot-interval", "100ms",
	"--trailing-logs", "64", "--snapshot-log-bytes", "65536",
}

// logSinceStart returns the node's log since its latest start.
func (p *proc) logSinceStart() string {
	p.t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		p.t.Fatalf("read log of %s: %v", p.id, err)
	}
	s := string(b)
	return s[strings.LastIndex(s, "=== start"):]
}

// restartToServing launches p and returns how long it took until a
// linearizable read through its front door succeeded.
func restartToServing(t *testing.T, p *proc) time.Duration {
	t.Helper()
	t0 := time.Now()
	p.launch()
	c := mustClient(t, p.thriftAddr)
	eventually(t, 60*time.Second, "a linearizable read on "+p.id, func() (bool, string) {
		if !p.alive() {
			t.Fatalf("kvnode %s exited during restart", p.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Get(ctx, []byte("probe"))
		return err == nil, fmt.Sprint(err)
	})
	d := time.Since(t0)
	p.waitReady(10 * time.Second)
	return d
}

// loadUntilKilled writes keys prefix-w-i from workers goroutines until
// kill runs, once after writes have been acknowledged, and returns every
// acknowledged key and value.
func loadUntilKilled(t *testing.T, p *proc, prefix string, workers, after int) map[string]string {
	t.Helper()
	c := mustClient(t, p.thriftAddr)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				k := fmt.Sprintf("%s-%02d-%06d", prefix, w, i)
				v := k + strings.Repeat("v", 64)
				wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := c.Put(wctx, []byte(k), []byte(v))
				wcancel()
				if err != nil {
					return // the node is gone: the outcome is unknown, not acked
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		}(w)
	}
	// The load runs for a random number of writes: the kill lands anywhere.
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("%d writes acknowledged", after), func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < after {
			return fmt.Errorf("%d acknowledged", len(acked))
		}
		return nil
	})
	p.kill()
	cancel()
	wg.Wait()
	return acked
}

// TestPebble_KillNineUnderLoadKeepsAckedWrites kills a single pebble node
// with kill -9 at a random moment of a concurrent write load, restarts it,
// and reads back every write acknowledged in any round. The state was
// synced before every Raft snapshot, so the node starts from it: it must
// not restore a snapshot at start.
func TestPebble_KillNineUnderLoadKeepsAckedWrites(t *testing.T) {
	p := newProc(t, "n1", append([]string{"--engine", "pebble"}, pebbleSnapFlags...)...)
	p.start()
	all := map[string]string{}
	for round := 0; round < 3; round++ {
		after := 200 + rand.IntN(1800)
		acked := loadUntilKilled(t, p, fmt.Sprintf("r%d", round), 8, after)
		for k, v := range acked {
			all[k] = v
		}
		// A raft snapshot exists at the restart, so keeping the state
		// instead of restoring it is the start rule's choice.
		done, _ := snapshots(t, p)
		if len(done) == 0 {
			t.Fatalf("round %d: no raft snapshot before the kill", round)
		}
		snap := done[0].Index
		d := restartToServing(t, p)
		log := p.logSinceStart()
		if !strings.Contains(log, "durable state opened") {
			t.Fatalf("round %d: the pebble state was not opened", round)
		}
		if strings.Contains(log, "snapshot restored") {
			t.Fatalf("round %d: the node restored a snapshot at start though its state was current", round)
		}
		t.Logf("round %d: %d writes acked before kill -9 (killed after %d); raft snapshot at %d; restart to a linearizable read: %v", round, len(acked), after, snap, d)
		checkValues(t, p, all)
	}
}

// TestPebble_RestartToServing loads the same keys into a pebble node and
// an arena node, kills both with kill -9, and reports the time from
// restart to the first linearizable read on each.
func TestPebble_RestartToServing(t *testing.T) {
	const keys, size = 10000, 512
	times := map[string]time.Duration{}
	for _, engine := range []string{"arena", "pebble"} {
		p := newProc(t, "n1", "--engine", engine)
		p.start()
		acked := writeKeys(t, mustClient(t, p.thriftAddr), "key-", keys, size, 16)
		p.kill()
		times[engine] = restartToServing(t, p)
		checkValues(t, p, acked)
		p.kill()
	}
	t.Logf("restart to a linearizable read with %d keys of %d bytes: arena %v, pebble %v", keys, size, times["arena"], times["pebble"])
}

// waitSnapshotPast polls p until its latest snapshot index is above index.
func waitSnapshotPast(t *testing.T, c *client.Client, p *proc, index int64) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("a snapshot of %s past %d", p.id, index), func() (bool, string) {
		st := mustStatus(t, c, p.thriftAddr)
		return st.SnapshotIndex > index, fmt.Sprintf("snapshot at %d, want > %d", st.SnapshotIndex, index)
	})
}

// transferTo moves the leadership to p and waits until p leads.
func transferTo(t *testing.T, c *testCluster, p *proc) {
	t.Helper()
	if l := c.waitLeader(20 * time.Second); l == p {
		return
	}
	cl := mustClient(t, p.thriftAddr)
	eventually(t, 30*time.Second, p.id+" leading", func() (bool, string) {
		if l := c.waitLeader(20 * time.Second); l == p {
			return true, ""
		}
		_, err := cl.TransferLeadership(ctxTimeout(t, 10*time.Second), p.id)
		return false, fmt.Sprint(err)
	})
}

// TestPebble_SnapshotInstallAcrossEngines runs one pebble node beside two
// arena nodes. A pebble follower left far behind installs a snapshot an
// arena leader made, then an arena follower installs one a pebble leader
// made; every node ends with the same state.
func TestPebble_SnapshotInstallAcrossEngines(t *testing.T) {
	c := startClusterWith(t, 3, func(p *proc) {
		if p.id == "n1" {
			p.extra = append(p.extra, "--engine", "pebble")
		}
	}, pebbleSnapFlags...)
	pebble, arena := c.procs[0], c.procs[2]
	all := map[string]string{}

	for _, tc := range []struct {
		name             string
		leader, follower *proc
	}{
		{"arena leader to pebble follower", c.procs[1], pebble},
		{"pebble leader to arena follower", pebble, arena},
	} {
		transferTo(t, c, tc.leader)
		cl := mustClient(t, tc.leader.thriftAddr)
		stopped := mustStatus(t, cl, tc.leader.thriftAddr).AppliedIndex
		tc.follower.kill()
		for k, v := range writeKeys(t, cl, tc.follower.id+"-behind-", 3000, 100, 8) {
			all[k] = v
		}
		waitSnapshotPast(t, cl, tc.leader, stopped+200)
		tc.follower.start()
		waitDigests(t, c, 30*time.Second)
		if log := tc.follower.logSinceStart(); !strings.Contains(log, "Installed remote snapshot") || !strings.Contains(log, "snapshot restored") {
			t.Fatalf("%s: %s did not install the leader's snapshot", tc.name, tc.follower.id)
		}
		checkValues(t, tc.follower, all)
		t.Logf("%s: %s caught up by snapshot install", tc.name, tc.follower.id)
	}
}

// TestPebble_EngineMigrationKeepsKeys restarts one data dir as arena, then
// pebble (raft restores its snapshot into the new state), then arena
// again (the pebble state is left behind, unused), then pebble again (that
// state is out of date, so raft restores over it), writing between steps.
func TestPebble_EngineMigrationKeepsKeys(t *testing.T) {
	p := newProc(t, "n1", pebbleSnapFlags...)
	all := map[string]string{}
	var restores atomic.Int64
	for i, engine := range []string{"arena", "pebble", "arena", "pebble"} {
		p.extra = append(append([]string{}, pebbleSnapFlags...), "--engine", engine)
		p.start()
		if i > 0 {
			checkValues(t, p, all)
		}
		if engine == "pebble" && strings.Contains(p.logSinceStart(), "snapshot restored") {
			restores.Add(1)
		}
		cl := mustClient(t, p.thriftAddr)
		started := mustStatus(t, cl, p.thriftAddr).AppliedIndex
		for k, v := range writeKeys(t, cl, fmt.Sprintf("step%d-", i), 1000, 100, 8) {
			all[k] = v
		}
		// A snapshot of this step's engine past the state the previous
		// pebble run left behind.
		waitSnapshotPast(t, cl, p, started)
		if err := p.stop(20 * time.Second); err != nil {
			t.Fatalf("stop %s node: %v", engine, err)
		}
	}
	p.start()
	checkValues(t, p, all)
	if got := restores.Load(); got != 2 {
		t.Fatalf("the pebble starts restored %d snapshots, want 2 (the state was new, then out of date)", got)
	}
}
