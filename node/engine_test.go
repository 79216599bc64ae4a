package node

import (
	"errors"
	"strconv"
	"testing"

	"github.com/hashicorp/raft"
)

// logAndSnap returns a log holding entries first..last (none when last is
// 0) and a snapshot store whose newest snapshot is at snap (none when 0).
func logAndSnap(t *testing.T, first, last, snap uint64) (raft.LogStore, raft.SnapshotStore) {
	t.Helper()
	logs := raft.NewInmemStore()
	for i := first; last > 0 && i <= last; i++ {
		if err := logs.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand}); err != nil {
			t.Fatal(err)
		}
	}
	snaps := raft.NewInmemSnapshotStore()
	if snap > 0 {
		sink, err := snaps.Create(raft.SnapshotVersionMax, snap, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return logs, snaps
}

func TestRestoreOnStart(t *testing.T) {
	for _, tc := range []struct {
		name              string
		applied           uint64
		first, last, snap uint64
		restore, foreign  bool
	}{
		{name: "new node, no state", applied: 0},
		{name: "log only, state behind", applied: 5, first: 1, last: 10},
		{name: "state at the snapshot", applied: 100, first: 90, last: 120, snap: 100},
		{name: "state between snapshot and log end", applied: 110, first: 90, last: 120, snap: 100},
		{name: "state at the log end", applied: 120, first: 90, last: 120, snap: 100},
		{name: "state behind the snapshot", applied: 99, first: 90, last: 120, snap: 100, restore: true},
		{name: "empty state, snapshot", applied: 0, first: 90, last: 120, snap: 100, restore: true},
		// A backup's restore puts raft's snapshot above every index the
		// log had, and empties the log.
		{name: "restored backup above the state", applied: 120, snap: 500, restore: true},
		{name: "empty log, state at the snapshot", applied: 500, snap: 500},
		{name: "state past the log end", applied: 121, first: 90, last: 120, snap: 100, foreign: true},
		{name: "state past the snapshot, empty log", applied: 501, snap: 500, foreign: true},
		{name: "state but no raft state", applied: 7, foreign: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs, snaps := logAndSnap(t, tc.first, tc.last, tc.snap)
			restore, err := restoreOnStart(tc.applied, logs, snaps)
			if tc.foreign {
				if !errors.Is(err, ErrForeignState) {
					t.Fatalf("err = %v, want ErrForeignState", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if restore != tc.restore {
				t.Fatalf("restore = %v, want %v", restore, tc.restore)
			}
		})
	}
}

func TestDurableBudget(t *testing.T) {
	const base = 8 << 20
	for _, tc := range []struct{ state, want int64 }{
		{0, base},
		{base * 4, base},
		{1 << 30, min(256<<20, maxDurableBudget)}, // a 1 GB state: a quarter of it, or the cap
		{100 << 20, 25 << 20},
		{8 << 30, maxDurableBudget},
	} {
		if got := durableBudget(base, tc.state); got != tc.want {
			t.Errorf("durableBudget(%d, %d) = %d, want %d", base, tc.state, got, tc.want)
		}
	}
	capped := int64(256 << 20)
	if strconv.IntSize == 32 {
		capped = 64 << 20 // bbolt's map of raft.db shares 3 GB with the heap
	}
	if maxDurableBudget != capped {
		t.Errorf("maxDurableBudget = %d on a %d-bit platform, want %d", maxDurableBudget, strconv.IntSize, capped)
	}
}

func TestConfig_PebbleNeedsADataDir(t *testing.T) {
	cfg := InmemConfig("n1", nil, nil)
	cfg.RaftAddr = "127.0.0.1:1"
	cfg.Engine = EnginePebble
	if err := cfg.Validate(); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("validate without a data dir = %v, want ErrBadConfig", err)
	}
	cfg.DataDir = t.TempDir()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate with a data dir: %v", err)
	}
}
