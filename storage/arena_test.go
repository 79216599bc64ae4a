package storage_test

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/cubekv/cubekv/storage"
	"github.com/cubekv/cubekv/storage/storagetest"
)

func TestArenaMmap_Conformance(t *testing.T) {
	storagetest.Run(t, storage.NewArenaMmap)
}

// arenaValue returns a value of n bytes derived from round and i.
func arenaValue(round, i, n int) []byte {
	v := bytes.Repeat([]byte{byte(round)}, n)
	copy(v, fmt.Sprintf("%d/%d", round, i))
	return v
}

// overwriteAll puts every key of keys with a value of round, n bytes long.
func overwriteAll(e storage.Engine, idx *uint64, keys [][]byte, round, n int) {
	for i, k := range keys {
		*idx++
		e.Put(*idx, bytes.Clone(k), arenaValue(round, i, n))
	}
}

// arenaKeys returns n distinct keys.
func arenaKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%05d", i)
	}
	return keys
}

// checkRound fails t unless r holds exactly keys with the values of round.
func checkRound(t *testing.T, what string, r storage.Reader, keys [][]byte, round, n int) {
	t.Helper()
	i := 0
	r.Scan(nil, nil, false, func(e storage.Entry) bool {
		if i >= len(keys) || !bytes.Equal(e.Key, keys[i]) || !bytes.Equal(e.Value, arenaValue(round, i, n)) {
			t.Fatalf("%s: entry %d = %q=%q, want round %d", what, i, e.Key, e.Value[:min(len(e.Value), 16)], round)
		}
		i++
		return true
	})
	if i != len(keys) {
		t.Fatalf("%s: scanned %d entries, want %d", what, i, len(keys))
	}
}

func TestArena_OverwritesReuseSlotsWithoutViews(t *testing.T) {
	for _, n := range []int{100, 20 << 10} { // a slab class and a large record
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			e := mustNew(t, storage.KindArena)
			keys := arenaKeys(50)
			var idx uint64
			overwriteAll(e, &idx, keys, 0, n)
			held := storage.ArenaSlabBytes(e)
			for round := 1; round <= 20; round++ {
				overwriteAll(e, &idx, keys, round, n)
			}
			checkRound(t, "engine", e, keys, 20, n)
			// Large records are sized exactly, and a later Raft index can
			// take a byte more to encode.
			if got := storage.ArenaSlabBytes(e); got > held+int64(len(keys)*8) {
				t.Fatalf("slab bytes after 20 rounds of overwrites = %d, want %d as after the first", got, held)
			}
		})
	}
}

func TestArena_ViewPinsRetiredSlotsUntilReleased(t *testing.T) {
	for _, n := range []int{100, 20 << 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			e := mustNew(t, storage.KindArena)
			keys := arenaKeys(50)
			var idx uint64
			overwriteAll(e, &idx, keys, 0, n)
			v := e.Snapshot()
			for round := 1; round <= 5; round++ {
				overwriteAll(e, &idx, keys, round, n)
				checkRound(t, "view", v, keys, 0, n)
			}
			if got, want := storage.ArenaPending(e), 5*len(keys); got != want {
				t.Fatalf("retired slots pending with a live view = %d, want %d", got, want)
			}
			held := storage.ArenaSlabBytes(e)
			storage.Release(v)
			storage.Release(v) // a second release changes nothing
			overwriteAll(e, &idx, keys, 6, n)
			if got := storage.ArenaPending(e); got != 0 {
				t.Fatalf("retired slots pending after release = %d, want 0", got)
			}
			for round := 7; round <= 12; round++ {
				overwriteAll(e, &idx, keys, round, n)
			}
			checkRound(t, "engine", e, keys, 12, n)
			if got := storage.ArenaSlabBytes(e); got > held+int64(len(keys)*8) {
				t.Fatalf("slab bytes after release and more overwrites = %d, want at most %d: freed slots not reused", got, held)
			}
		})
	}
}

func TestArena_OlderViewKeepsSlotsANewerViewReleased(t *testing.T) {
	e := mustNew(t, storage.KindArena)
	keys := arenaKeys(20)
	var idx uint64
	overwriteAll(e, &idx, keys, 0, 100)
	old := e.Snapshot()
	overwriteAll(e, &idx, keys, 1, 100)
	newer := e.Snapshot()
	overwriteAll(e, &idx, keys, 2, 100)
	storage.Release(newer)
	for round := 3; round <= 10; round++ {
		overwriteAll(e, &idx, keys, round, 100)
	}
	checkRound(t, "old view", old, keys, 0, 100)
	checkRound(t, "engine", e, keys, 10, 100)
	storage.Release(old)
}

func TestArena_UnreachableViewFreesSlots(t *testing.T) {
	e := mustNew(t, storage.KindArena)
	keys := arenaKeys(20)
	var idx uint64
	overwriteAll(e, &idx, keys, 0, 100)
	func() {
		v := e.Snapshot()
		overwriteAll(e, &idx, keys, 1, 100)
		checkRound(t, "view", v, keys, 0, 100)
	}()
	if storage.ArenaPending(e) == 0 {
		t.Fatal("no retired slot pending while a view was live")
	}
	deadline := time.Now().Add(10 * time.Second)
	for round := 2; storage.ArenaPending(e) != 0; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d retired slots still pending 10s after their view became unreachable", storage.ArenaPending(e))
		}
		runtime.GC()
		overwriteAll(e, &idx, keys[:1], round, 100)
	}
}
