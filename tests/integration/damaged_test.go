package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// boardFlags returns the Raft log and snapshot settings of
// deploy/config/n1.env as kvnode flags.
func boardFlags(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "deploy", "config", "n1.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keep := map[string]bool{
		"KVNODE_SNAPSHOT_THRESHOLD": true, "KVNODE_TRAILING_LOGS": true, "KVNODE_SNAPSHOT_INTERVAL": true,
		"KVNODE_SNAPSHOT_LOG_BYTES": true,
		"KVNODE_MAX_ENTRY_BYTES":    true, "KVNODE_MAX_VALUE_SIZE": true, "KVNODE_MAX_FRAME_SIZE": true,
	}
	var flags []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && keep[k] {
			flags = append(flags, "--"+strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "KVNODE_")), "_", "-"), v)
			delete(keep, k)
		}
	}
	if len(keep) > 0 {
		t.Fatalf("n1.env lacks %v", keep)
	}
	return flags
}

// snapMeta is the part of raft's snapshots/*/meta.json the tests read.
type snapMeta struct {
	ID    string
	Index uint64
}

// snapshots lists a node's finished snapshots, newest first, and its
// unfinished (*.tmp) ones.
func snapshots(t *testing.T, p *proc) (done []snapMeta, tmp []string) {
	t.Helper()
	dir := filepath.Join(p.dataDir, "raft", "snapshots")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			tmp = append(tmp, e.Name())
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var m snapMeta
		if json.Unmarshal(b, &m) == nil {
			done = append(done, m)
		}
	}
	sort.Slice(done, func(i, j int) bool { return done[i].Index > done[j].Index })
	return done, tmp
}

// writeKeys writes n keys prefix%05d with values of size bytes through cl,
// from workers goroutines, and returns what was acknowledged. One worker
// makes one log entry per key; more let the leader coalesce.
func writeKeys(t *testing.T, cl *client.Client, prefix string, n, size, workers int) map[string]string {
	t.Helper()
	ctx := ctxTimeout(t, 5*time.Minute)
	var mu sync.Mutex
	acked := map[string]string{}
	testutil.Concurrently(t, workers, func(w int) error {
		for i := w; i < n; i += workers {
			k := fmt.Sprintf("%s%05d", prefix, i)
			v := fmt.Sprintf("%s-%s", k, strings.Repeat("x", size))
			if _, err := cl.Put(ctx, []byte(k), []byte(v)); err != nil {
				return fmt.Errorf("put %s: %w", k, err)
			}
			mu.Lock()
			acked[k] = v
			mu.Unlock()
		}
		return nil
	})
	return acked
}

// checkValues reads every acknowledged key from p alone (STALE reads on
// one connection to p, so the answers are p's own state) and fails on any
// value that differs.
func checkValues(t *testing.T, p *proc, acked map[string]string) {
	t.Helper()
	conn := rawConn(t, p.thriftAddr)
	stale := kv.Consistency_STALE
	for k, v := range acked {
		r, err := kvCall(t, conn, 10*time.Second, func(ctx context.Context, c *kv.KVClient) (*kv.GetResponse, error) {
			return c.Get(ctx, &kv.GetRequest{Key: []byte(k), Consistency: &stale})
		})
		if err != nil || !r.Found || string(r.Entry.Value) != v {
			t.Fatalf("%s on %s: %+v, %v (wrong or missing value)", k, p.id, r, err)
		}
	}
}

// rejoinEmpty is the recovery of docs/operations.md "Damaged files": remove
// the node from the cluster, move its data dir aside, start it empty and
// add it back; it must end with every acknowledged value.
func rejoinEmpty(t *testing.T, c *testCluster, p *proc, acked map[string]string) {
	t.Helper()
	leader := c.waitLeader(20*time.Second, p)
	cl := mustClient(t, leader.thriftAddr)
	ctx := ctxTimeout(t, 2*time.Minute)
	if _, err := cl.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: p.id}); err != nil {
		t.Fatalf("member remove %s: %v", p.id, err)
	}
	if err := os.Rename(p.dataDir, p.dataDir+".damaged"); err != nil {
		t.Fatal(err)
	}
	for i, a := range p.extra {
		if a == "--initial-cluster" {
			p.extra[i], p.extra[i+1] = "--bootstrap", "false"
		}
	}
	p.launch()
	if _, err := cl.AddMember(ctx, &kv.AddMemberRequest{NodeID: p.id, RaftAddr: p.raftAddr}); err != nil {
		t.Fatalf("member add %s: %v", p.id, err)
	}
	p.waitReady(60 * time.Second)
	waitDigests(t, c, 60*time.Second)
	checkValues(t, p, acked)
}

// TestDamaged_RaftDBTruncated truncates a stopped follower's raft.db to
// half: kvnode must refuse to start (exit 2) with one line naming the file
// and the recovery, never serve, and the documented recovery must bring it
// back with every acknowledged value.
func TestDamaged_RaftDBTruncated(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader(20 * time.Second)
	acked := writeKeys(t, mustClient(t, leader.thriftAddr), "k", 2000, 1000, 8)
	f := c.followers(leader)[0]
	waitDigests(t, c, 60*time.Second)
	if err := f.stop(30 * time.Second); err != nil {
		t.Fatalf("stop %s: %v", f.id, err)
	}
	db := filepath.Join(f.dataDir, "raft", "raft.db")
	fi, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(db, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	code, out := runRefused(t, f.args()...)
	assertRefusal(t, code, out, db, "failed its consistency check", "kvctl member remove", "docs/operations.md")
	rejoinEmpty(t, c, f, acked)
}

// TestDamaged_NewestSnapshotBoardSettings runs a cluster with the board
// settings of deploy/config, flips a byte in a stopped follower's newest
// snapshot, and restarts it: it must skip that snapshot, rebuild from the
// previous one and the log, and serve only the right values.
func TestDamaged_NewestSnapshotBoardSettings(t *testing.T) {
	c := startCluster(t, 3, boardFlags(t)...)
	leader := c.waitLeader(20 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	f := c.followers(leader)[0]
	acked := map[string]string{}
	// Write until the follower keeps two snapshots, as a board does after
	// running a while. The board settings snapshot every 8 MiB of log, so
	// each round overwrites 200 keys with 60 KB values (12 MB of log) that
	// name the round: a node that replayed too little of the log would
	// serve an older round's value.
	ctx := ctxTimeout(t, 5*time.Minute)
	value := strings.Repeat("x", 60000)
	for round := 0; ; round++ {
		testutil.Concurrently(t, 4, func(w int) error {
			for i := w; i < 200; i += 4 {
				k, v := fmt.Sprintf("k%03d", i), fmt.Sprintf("r%02d-%s", round, value)
				if _, err := cl.Put(ctx, []byte(k), []byte(v)); err != nil {
					return fmt.Errorf("put %s: %w", k, err)
				}
			}
			return nil
		})
		for i := 0; i < 200; i++ {
			acked[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("r%02d-%s", round, value)
		}
		if done, _ := snapshots(t, f); len(done) >= 2 {
			break
		}
		if round == 20 {
			t.Fatalf("%s has not kept two snapshots after %d rounds (%d MB of log)", f.id, round+1, 12*(round+1))
		}
	}
	waitDigests(t, c, 60*time.Second)
	if err := f.stop(30 * time.Second); err != nil {
		t.Fatalf("stop %s: %v", f.id, err)
	}
	done, _ := snapshots(t, f)
	state := filepath.Join(f.dataDir, "raft", "snapshots", done[0].ID, "state.bin")
	testutil.FlipByte(t, state)
	f.start()
	if !f.logContains("damaged snapshot skipped") {
		t.Errorf("%s did not say it skipped the damaged snapshot", f.id)
	}
	waitDigests(t, c, 60*time.Second)
	checkValues(t, f, acked)
}

// TestDamaged_SnapshotsCannotRebuild damages a stopped follower's newest
// snapshot where the log no longer reaches back to the previous one (a
// short trailing log), then every snapshot: each start must exit 2 with one
// line saying the state cannot be rebuilt and what to do (before, raft
// panicked with "log not found" on every start), and the documented
// recovery must bring it back.
func TestDamaged_SnapshotsCannotRebuild(t *testing.T) {
	c := startCluster(t, 3, "--snapshot-threshold", "64", "--trailing-logs", "16", "--snapshot-interval", "1s")
	leader := c.waitLeader(20 * time.Second)
	cl := mustClient(t, leader.thriftAddr)
	f := c.followers(leader)[0]
	acked := map[string]string{}
	for round := 0; ; round++ {
		for k, v := range writeKeys(t, cl, fmt.Sprintf("r%02d-", round), 100, 100, 1) {
			acked[k] = v
		}
		if done, _ := snapshots(t, f); len(done) >= 2 && done[0].Index-done[1].Index > 16 {
			break
		}
		if round == 30 {
			t.Fatalf("%s has not kept two snapshots after %d rounds", f.id, round+1)
		}
		eventually(t, 30*time.Second, "a new snapshot on "+f.id, func() (bool, string) {
			done, _ := snapshots(t, f)
			return len(done) > 0 && (len(done) > 1 || round == 0), fmt.Sprintf("%v", done)
		})
	}
	if err := f.stop(30 * time.Second); err != nil {
		t.Fatalf("stop %s: %v", f.id, err)
	}
	done, _ := snapshots(t, f)
	snapDir := filepath.Join(f.dataDir, "raft", "snapshots")
	testutil.FlipByte(t, filepath.Join(snapDir, done[0].ID, "state.bin"))
	code, out := runRefused(t, f.args()...)
	assertRefusal(t, code, out, "local state cannot be rebuilt", fmt.Sprintf("the newest good snapshot ends at index %d", done[1].Index), "kvctl member remove", "docs/operations.md")

	testutil.FlipByte(t, filepath.Join(snapDir, done[1].ID, "state.bin"))
	code, out = runRefused(t, f.args()...)
	assertRefusal(t, code, out, "local state cannot be rebuilt", "every snapshot in "+snapDir+" is damaged", "kvctl member remove")
	rejoinEmpty(t, c, f, acked)
}
