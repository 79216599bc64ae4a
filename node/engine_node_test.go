package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/thrift/kv"
)

// countHandler counts the records whose message is msg and passes every
// record on.
type countHandler struct {
	slog.Handler
	msg string
	n   *atomic.Int64
}

func (h countHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countHandler{h.Handler.WithAttrs(a), h.msg, h.n}
}

func (h countHandler) WithGroup(g string) slog.Handler {
	return countHandler{h.Handler.WithGroup(g), h.msg, h.n}
}

// diskNode opens a one-node cluster on dataDir with engine, its Raft
// stores on disk, and waits until it is ready for linearizable reads.
// restores counts the FSM's snapshot restores.
func diskNode(t *testing.T, dataDir, engine string, restores *atomic.Int64) *Node {
	t.Helper()
	return diskNodeWith(t, dataDir, engine, restores, nil)
}

// diskNodeWith is diskNode with tweak applied to the config before New.
func diskNodeWith(t *testing.T, dataDir, engine string, restores *atomic.Int64, tweak func(*Config)) *Node {
	t.Helper()
	_, trans := raft.NewInmemTransport("n1")
	logger := slog.New(countHandler{testLogger(t, "n1").Handler(), "snapshot restored", restores})
	cfg := InmemConfig("n1", trans, logger)
	cfg.LogStore, cfg.StableStore, cfg.SnapshotStore = nil, nil, nil
	cfg.DataDir = dataDir
	cfg.Engine = engine
	cfg.Bootstrap = true
	if tweak != nil {
		tweak(cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Open(); err != nil {
		t.Fatalf("open with engine %q: %v", engine, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	testutil.Eventually(t, 10*time.Second, "a read index after open", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := n.ReadIndex(ctx)
		return err
	})
	return n
}

func putKeys(t *testing.T, n *Node, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := from; i < to; i++ {
		if _, err := n.Apply(ctx, put(fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i))); err != nil {
			t.Fatalf("put k%04d: %v", i, err)
		}
	}
}

func checkKeys(t *testing.T, n *Node, count int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entries, more, _, err := n.Scan(ctx, nil, nil, false, count+1, false, kv.Consistency_LINEARIZABLE)
	if err != nil || more || len(entries) != count {
		t.Fatalf("scan = %d entries (more %v, err %v), want %d", len(entries), more, err, count)
	}
	for i, e := range entries {
		if k, v := fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i); string(e.Key) != k || string(e.Value) != v {
			t.Fatalf("entry %d = %q=%q, want %q=%q", i, e.Key, e.Value, k, v)
		}
	}
}

func TestNode_PebbleRestartKeepsStateWithoutRestore(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, EnginePebble, &restores)
	putKeys(t, n, 0, 50)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 50, 100)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = diskNode(t, dir, EnginePebble, &restores)
	checkKeys(t, n, 100)
	if got := restores.Load(); got != 0 {
		t.Fatalf("%d snapshot restores, want none: the state was current", got)
	}
	if got := n.FSM().EngineName(); got != EnginePebble {
		t.Fatalf("engine %q", got)
	}
}

// An engine change on the same data dir keeps every key: into pebble raft
// restores its snapshot (the new state is empty), back into memory it
// restores and replays as always, and into pebble again the state left
// behind is out of date, so raft restores over it.
func TestNode_EngineMigrationKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, storage.KindArena, &restores)
	putKeys(t, n, 0, 40)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 40, 60)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	restores.Store(0)
	n = diskNode(t, dir, EnginePebble, &restores)
	checkKeys(t, n, 60)
	if got := restores.Load(); got != 1 {
		t.Fatalf("arena -> pebble: %d snapshot restores, want 1", got)
	}
	putKeys(t, n, 60, 80)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	n = diskNode(t, dir, storage.KindArena, &restores)
	checkKeys(t, n, 80)
	putKeys(t, n, 80, 100)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 100, 120)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	restores.Store(0)
	n = diskNode(t, dir, EnginePebble, &restores)
	checkKeys(t, n, 120)
	if got := restores.Load(); got != 1 {
		t.Fatalf("arena -> stale pebble state: %d snapshot restores, want 1", got)
	}
}

// A state that holds more than the Raft log is refused: it is not this
// log's state.
func TestNode_PebbleRefusesStateAheadOfLog(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, EnginePebble, &restores)
	putKeys(t, n, 0, 20)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "raft")); err != nil {
		t.Fatal(err)
	}
	mustRefuseOpen(t, dir, true, ErrForeignState)
}

// ForceNewCluster of a pebble node replays through a scratch pebble state
// that it removes afterwards; the pebble node that starts afterwards holds
// every key, before and after.
func TestNode_PebbleAfterForceNewCluster(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, EnginePebble, &restores)
	putKeys(t, n, 0, 30)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 30, 50)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.RaftAddr, cfg.Engine = "n1", dir, "127.0.0.1:1", EnginePebble
	cfg.Logger = testLogger(t, "n1")
	if err := ForceNewCluster(cfg); err != nil {
		t.Fatalf("force new cluster: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, recoverStateDir+"*")); len(left) != 0 {
		t.Fatalf("scratch state left behind: %v", left)
	}
	n = diskNode(t, dir, EnginePebble, &restores)
	checkKeys(t, n, 50)
	putKeys(t, n, 50, 60)
	checkKeys(t, n, 60)
}

// A pebble node restarted on its state re-delivers the log since raft's
// last snapshot, skipping what it holds. A raft snapshot taken in that
// window must not be recorded below the state it holds: a node that later
// restores it into an in-memory engine (here: the same data dir switched
// to arena) would apply the entries in between twice, and a transaction
// that read a key written after it would take the other branch.
func TestNode_PebbleSnapshotDuringReplayIsAtItsState(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, EnginePebble, &restores)
	putKeys(t, n, 0, 20)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 20, 300)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	no := false
	txn := &kv.Command{Op: kv.CommandOp_TXN,
		Compares: []*kv.Compare{{Key: []byte("x"), Target: kv.CompareTarget_EXISTS, Exists: &no}},
		Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("y"), Value: []byte("A")}},
		Failure:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte("y"), Value: []byte("B")}},
	}
	if _, err := n.Apply(ctx, txn); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, put("x", "1")); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 300, 1500)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart on the state and ask raft for snapshots from the first moment.
	_, trans := raft.NewInmemTransport("n1")
	cfg := InmemConfig("n1", trans, testLogger(t, "n1"))
	cfg.LogStore, cfg.StableStore, cfg.SnapshotStore = nil, nil, nil
	cfg.DataDir, cfg.Engine, cfg.Bootstrap = dir, EnginePebble, true
	n2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Open(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "a raft snapshot after the restart", func() error {
		return n2.raft.Snapshot().Error()
	})
	if err := n2.Close(); err != nil {
		t.Fatal(err)
	}
	n3 := diskNode(t, dir, "arena", &restores)
	e, found, _, err := n3.Get(ctx, []byte("y"), kv.Consistency_LINEARIZABLE)
	if err != nil || !found || string(e.Value) != "A" {
		t.Fatalf("after switching to arena: y = %q (found %v, err %v), want A", e.Value, found, err)
	}
	if e, found, _, err := n3.Get(ctx, []byte("k1499"), kv.Consistency_LINEARIZABLE); err != nil || !found || string(e.Value) != "v1499" {
		t.Fatalf("after switching to arena: k1499 = %q (found %v, err %v)", e.Value, found, err)
	}
}

// damageNewestSnapshot flips a byte in the middle of the newest snapshot's
// state file under dir and returns that snapshot.
func damageNewestSnapshot(t *testing.T, dir string) storedSnapshot {
	t.Helper()
	snapDir := filepath.Join(dir, "raft", "snapshots")
	snaps, _, err := listSnapshots(snapDir, 2)
	if err != nil || len(snaps) == 0 {
		t.Fatalf("list snapshots: %v (%d)", err, len(snaps))
	}
	path := filepath.Join(snaps[0].dir, "state.bin")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if snaps[0].verify() == nil {
		t.Fatal("the damaged snapshot still passes its check")
	}
	return snaps[0]
}

// A pebble node whose state holds more than its newest snapshot does not
// read that snapshot to start: a damaged one neither stops it nor delays
// it. The check runs after the start, reports the damage and replaces the
// snapshot with a new one.
func TestNode_PebbleStartsPastADamagedSnapshotAndReplacesIt(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, EnginePebble, &restores)
	putKeys(t, n, 0, 50)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 50, 80)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	bad := damageNewestSnapshot(t, dir)
	if err := Preflight(&Config{DataDir: dir, Engine: EnginePebble}); err != nil {
		t.Fatalf("preflight of a pebble node past its damaged snapshot: %v", err)
	}

	n = diskNode(t, dir, EnginePebble, &restores)
	checkKeys(t, n, 80)
	if got := restores.Load(); got != 0 {
		t.Fatalf("%d snapshot restores, want none", got)
	}
	testutil.Eventually(t, 10*time.Second, "a new snapshot past the damaged one", func() error {
		snaps, _, err := listSnapshots(filepath.Join(dir, "raft", "snapshots"), 2)
		if err != nil {
			return err
		}
		if len(snaps) == 0 || snaps[0].Index <= bad.Index {
			return fmt.Errorf("newest snapshot %+v, damaged one at index %d", snaps, bad.Index)
		}
		return snaps[0].verify()
	})
}

// A pebble node whose state is behind raft's snapshot (here: gone) needs
// the snapshot, and a damaged one with nothing to fall back on is refused
// at Open with ErrCannotRebuild, as Preflight refuses it for an in-memory
// engine.
func TestNode_PebbleRestoreRefusesADamagedSnapshot(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNode(t, dir, EnginePebble, &restores)
	putKeys(t, n, 0, 30)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	damageNewestSnapshot(t, dir)
	if err := os.RemoveAll(filepath.Join(dir, stateDirName)); err != nil {
		t.Fatal(err)
	}
	mustRefuseOpen(t, dir, false, ErrCannotRebuild)
}

// mustRefuseOpen opens a pebble node on dir (bootstrapping when asked) and
// wants Open to fail with want, and Close to succeed after it.
func mustRefuseOpen(t *testing.T, dir string, bootstrap bool, want error) {
	t.Helper()
	_, trans := raft.NewInmemTransport("n1")
	cfg := InmemConfig("n1", trans, testLogger(t, "n1"))
	cfg.LogStore, cfg.StableStore, cfg.SnapshotStore = nil, nil, nil
	cfg.DataDir, cfg.Engine, cfg.Bootstrap = dir, EnginePebble, bootstrap
	nd, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := nd.Open(); !errors.Is(err, want) {
		_ = nd.Close()
		t.Fatalf("open = %v, want %v", err, want)
	}
	if err := nd.Close(); err != nil {
		t.Fatalf("close after a refused open: %v", err)
	}
}

// Raft, told to keep a pebble state, still starts from the newest snapshot
// whose metadata it can read and reads the log after it. When that is an
// older snapshot (the newer one's meta.json is damaged) and the log was
// compacted past it, the node is refused with ErrCannotRebuild; raft would
// otherwise panic on the missing entries.
func TestNode_PebbleRefusesWhenRaftsSnapshotIsBeforeTheLog(t *testing.T) {
	dir := t.TempDir()
	var restores atomic.Int64
	n := diskNodeWith(t, dir, EnginePebble, &restores, func(c *Config) { c.TrailingLogs = 1 })
	putKeys(t, n, 0, 50)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 50, 100)
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	putKeys(t, n, 100, 120)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	snaps, _, err := listSnapshots(filepath.Join(dir, "raft", "snapshots"), 2)
	if err != nil || len(snaps) != 2 {
		t.Fatalf("want two snapshots: %v %v", snaps, err)
	}
	if err := os.WriteFile(filepath.Join(snaps[0].dir, "meta.json"), []byte("{damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRefuseOpen(t, dir, false, ErrCannotRebuild)
}
