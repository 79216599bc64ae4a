package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cubekv/cubekv/storage/pebbleng"
)

// openPebble opens a durable FSM on the pebble state under root.
func openPebble(t testing.TB, cfg *Config, root string) *FSM {
	t.Helper()
	f, err := NewDurable(cfg, pebbleng.NewDir(root, pebbleng.Options{}))
	if err != nil {
		t.Fatalf("NewDurable: %v", err)
	}
	return f
}

// TestDurable_PebbleReopenAndReplay runs the durable FSM on the real pebble
// engine (the model test uses a fake): a random log applied in ApplyBatch
// calls of random sizes, with snapshots taken at random, the FSM closed and
// reopened from disk every so often and the log re-delivered from the last
// snapshot's index, as Raft does with NoSnapshotRestoreOnStart. Every
// answer, the state after each reopen and the final state must be the
// in-memory reference's; a snapshot of the pebble FSM restores into every
// in-memory engine and the reference's restores into a pebble FSM.
func TestDurable_PebbleReopenAndReplay(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 41))
			logs := randomLog(t, rng, 400)
			cfg := durableCfg(t)
			ref, want, states := reference(t, cfg, logs)
			root := t.TempDir()
			f := openPebble(t, cfg, root)
			var snapIdx uint64
			reopens := 0
			for next := 0; next < len(logs); {
				n := 1 + rng.IntN(16)
				if next+n > len(logs) {
					n = len(logs) - next
				}
				for i, out := range f.ApplyBatch(logs[next : next+n]) {
					if got := describe(t, out); got != want[next+i] {
						t.Fatalf("entry %d answered %s, want %s", next+i+1, got, want[next+i])
					}
				}
				next += n
				if rng.IntN(6) == 0 {
					_, snapIdx = snapshotBytes(t, f)
				}
				if rng.IntN(5) == 0 {
					if err := f.Close(); err != nil {
						t.Fatalf("Close: %v", err)
					}
					f = openPebble(t, cfg, root)
					reopens++
					if f.AppliedIndex() != uint64(next) {
						t.Fatalf("reopened at %d, closed at %d", f.AppliedIndex(), next)
					}
					if s := fullState(t, f); s != states[next] {
						t.Fatalf("reopened at %d:\n%s\nwant\n%s", next, s, states[next])
					}
					// Raft re-delivers from its last snapshot: the FSM skips
					// every entry it holds.
					for _, out := range f.ApplyBatch(logs[snapIdx:next]) {
						if out != nil {
							t.Fatalf("a re-delivered entry was applied again: %s", describe(t, out))
						}
					}
				}
			}
			if reopens == 0 {
				t.Fatal("the log was never reopened")
			}
			if a, b := fullState(t, f), fullState(t, ref); a != b {
				t.Fatalf("final state:\n%s\nwant\n%s", a, b)
			}
			fromPebble, _ := snapshotBytes(t, f)
			fromMemory, _ := snapshotBytes(t, ref)
			if !bytes.Equal(fromPebble, fromMemory) {
				t.Fatalf("snapshots differ: %d bytes from pebble, %d from memory", len(fromPebble), len(fromMemory))
			}
			for _, eng := range engines {
				m := mustNew(t, eng, func(c *Config) { c.MaxClients, c.ClientTTL = cfg.MaxClients, cfg.ClientTTL })
				mustRestore(t, m, fromPebble)
				if s := fullState(t, m); s != states[len(logs)] {
					t.Fatalf("%s restored from pebble:\n%s\nwant\n%s", eng, s, states[len(logs)])
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			// A fresh pebble FSM restores the in-memory snapshot, also
			// across a reopen.
			root = t.TempDir()
			g := openPebble(t, cfg, root)
			g.ApplyBatch(logs[:30])
			mustRestore(t, g, fromMemory)
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			g = openPebble(t, cfg, root)
			defer g.Close()
			if s := fullState(t, g); s != states[len(logs)] {
				t.Fatalf("pebble restored from memory, reopened:\n%s\nwant\n%s", s, states[len(logs)])
			}
		})
	}
}

// After a reopen Raft re-delivers the entries since its last snapshot and
// the FSM skips those it holds. A snapshot taken meanwhile would be
// recorded at the index Raft delivered last, below the state's, so an FSM
// installing it would apply the entries in between twice: Snapshot
// refuses (ErrReplaying) until Raft has caught up; a backup, which carries
// its own index, is not refused.
func TestDurable_NoRaftSnapshotWhileReplaying(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	logs := randomLog(t, rng, 60)
	cfg := durableCfg(t)
	root := t.TempDir()
	f := openPebble(t, cfg, root)
	f.ApplyBatch(logs[:50])
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = openPebble(t, cfg, root)
	defer f.Close()
	if _, err := f.Snapshot(); !errors.Is(err, ErrReplaying) {
		t.Fatalf("Snapshot before any re-delivery = %v, want ErrReplaying", err)
	}
	f.ApplyBatch(logs[20:40]) // Raft's last snapshot was at 20
	if _, err := f.Snapshot(); !errors.Is(err, ErrReplaying) {
		t.Fatalf("Snapshot with raft at 40 and the state at 50 = %v, want ErrReplaying", err)
	}
	var backup bytes.Buffer
	if info, _, err := f.WriteSnapshot(&backup); err != nil || info.AppliedIndex != 50 {
		t.Fatalf("backup while replaying: %+v %v, want one at 50", info, err)
	}
	f.ApplyBatch(logs[40:50])
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot once raft delivered 50: %v", err)
	}
	if got := snap.(*fsmSnapshot).applied; got != 50 {
		t.Fatalf("snapshot at %d, want 50", got)
	}
	snap.Release()
}
