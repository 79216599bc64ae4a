package node

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
)

func storeN(t *testing.T, m *logMeter, first, n uint64, size int) {
	t.Helper()
	var logs []*raft.Log
	for i := first; i < first+n; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: make([]byte, size)})
	}
	if err := m.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

func TestLogMeter_CountsCompactsAndRewrites(t *testing.T) {
	m := newLogMeter(raft.NewInmemStore())
	storeN(t, m, 1, 10, 100)  // 1..10: 1000 B
	storeN(t, m, 11, 10, 200) // 11..20: 2000 B
	storeN(t, m, 21, 1, 5000) // 21: 5000 B
	if got := m.bytesAfter(0); got != 8000 {
		t.Fatalf("bytes after 0 = %d, want 8000", got)
	}
	if got := m.bytesAfter(10); got != 7000 {
		t.Fatalf("bytes after 10 = %d, want 7000", got)
	}
	if got := m.bytesAfter(21); got != 0 {
		t.Fatalf("bytes after 21 = %d, want 0", got)
	}
	// The newest entries that fit in 7000 B are 11..21: 11 entries.
	if n, ok := m.entriesWithin(7000); !ok || n != 11 {
		t.Fatalf("entries within 7000 = %d %v, want 11 true", n, ok)
	}
	// Only the last call's entry fits in 6999 B.
	if n, ok := m.entriesWithin(6999); !ok || n != 1 {
		t.Fatalf("entries within 6999 = %d %v, want 1 true", n, ok)
	}
	if _, ok := m.entriesWithin(8000); ok {
		t.Fatal("every counted entry fits in 8000 B, yet the meter claims to know the count")
	}

	// A compaction of the head forgets the marks it covers.
	if err := m.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	if got := m.bytesAfter(0); got != 7000 {
		t.Fatalf("after compaction, bytes after 0 = %d, want 7000", got)
	}
	// A follower's rewritten tail replaces the entries it overlaps.
	if err := m.DeleteRange(21, 21); err != nil {
		t.Fatal(err)
	}
	storeN(t, m, 21, 1, 10) // 21 and 22 in a new term: 20 B
	storeN(t, m, 22, 1, 10)
	if got := m.bytesAfter(10); got != 2020 {
		t.Fatalf("after rewrite, bytes after 10 = %d, want 2020", got)
	}
	// Storing over the tail without a DeleteRange (raft always deletes a
	// conflicting tail first; the meter does not rely on it) does too.
	storeN(t, m, 22, 1, 30)
	if got := m.bytesAfter(10); got != 2040 {
		t.Fatalf("after overwrite, bytes after 10 = %d, want 2040", got)
	}
}

// TestNode_LogBytesTriggerSnapshotAndBoundTheLog: with an entry threshold the
// writes never reach, the byte budget alone makes the node snapshot, and the
// trailing entries kept after it stay within twice the budget.
func TestNode_LogBytesTriggerSnapshotAndBoundTheLog(t *testing.T) {
	const budget = 512 << 10
	c := mustClusterWith(t, 1, func(_ int, cfg *Config) {
		cfg.SnapshotThreshold = 1 << 30
		cfg.SnapshotInterval = time.Hour
		cfg.TrailingLogs = 1 << 30
		cfg.SnapshotLogBytes = budget
	})
	n := c.mustLeader(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	value := strings.Repeat("v", 4<<10)
	write := func(from, count int) {
		for i := from; i < from+count; i++ {
			if _, err := n.Apply(ctx, put(fmt.Sprintf("k%04d", i), value)); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
	}
	lastSnapshot := func() uint64 {
		v, err := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// 8 entries of 4 KiB: far below the budget, no snapshot.
	write(0, 8)
	if err := n.enforceLogBudget(); err != nil { // what the loop does every tick
		t.Fatal(err)
	}
	if s := lastSnapshot(); s != 0 {
		t.Fatalf("snapshot at index %d with 32 KiB in the log, budget 512 KiB", s)
	}
	// Past the budget: a snapshot follows within a few checks.
	write(8, 160)
	testutil.WaitFor(t, 10*time.Second, "a snapshot after the log passed its byte budget", func() bool { return lastSnapshot() > 0 })

	// Many budgets' worth: the log keeps at most about 2 budgets of trailing
	// entries plus what arrived since the last snapshot.
	for round := 0; round < 6; round++ {
		write(168+round*128, 128)
	}
	testutil.WaitFor(t, 15*time.Second, "the log compacted to its byte bound", func() bool {
		first, err1 := n.meter.FirstIndex()
		last, err2 := n.meter.LastIndex()
		if err1 != nil || err2 != nil {
			return false
		}
		var bytes int
		for i := first; i <= last; i++ {
			var l raft.Log
			if err := n.meter.GetLog(i, &l); err == nil {
				bytes += len(l.Data)
			}
		}
		return int64(bytes) <= 3*n.logBudget()+8<<10
	})
	if got := n.raft.ReloadableConfig().TrailingLogs; got >= 1<<30 {
		t.Fatalf("trailing logs left at %d, want lowered to what fits in 2 x the budget", got)
	}
	if b := n.logBudget(); b < budget || b >= budget+budget/4+1 {
		t.Fatalf("this node's budget %d, want within [%d, %d]", b, budget, budget+budget/4)
	}
}

// TestLogMeter_PassesMonotonicOn: raft asks its log store whether it is a
// raft.MonotonicLogStore to decide whether a snapshot install or a restore
// must empty the log; raft-wal needs it, so the meter must not hide it.
func TestLogMeter_PassesMonotonicOn(t *testing.T) {
	mono := &raft.MockMonotonicLogStore{}
	cache, err := newLogCache(16, 1<<20, mono)
	if err != nil {
		t.Fatal(err)
	}
	var store raft.LogStore = newLogMeter(cache)
	if m, ok := store.(raft.MonotonicLogStore); !ok || !m.IsMonotonic() {
		t.Fatal("the meter hides a monotonic store from raft")
	}
	store = newLogMeter(raft.NewInmemStore())
	if m, ok := store.(raft.MonotonicLogStore); ok && m.IsMonotonic() {
		t.Fatal("the meter claims a plain store is monotonic")
	}
}

// TestLogMeter_WakesWhenTheBudgetIsStored: a writer faster than the budget
// loop's tick wakes it through crossed as soon as the budget is stored.
func TestLogMeter_WakesWhenTheBudgetIsStored(t *testing.T) {
	m := newLogMeter(raft.NewInmemStore())
	storeN(t, m, 1, 10, 100) // 1000 B
	m.wakeAfter(10, 500)     // wake once 500 B are stored above index 10
	storeN(t, m, 11, 4, 100)
	select {
	case <-m.crossed:
		t.Fatal("woken after 400 of 500 bytes")
	default:
	}
	storeN(t, m, 15, 1, 100)
	select {
	case <-m.crossed:
	default:
		t.Fatal("not woken after 500 of 500 bytes")
	}
	storeN(t, m, 16, 10, 100)
	select {
	case <-m.crossed:
		t.Fatal("woken twice for one request")
	default:
	}
}
