// Package storagetest is the conformance suite every cubekv storage engine
// passes: Run covers the Engine contract (values, Raft indexes, scan bounds,
// size accounting, snapshot isolation, concurrent readers) and a randomized
// comparison against a trivial reference model, and storage.Load (BulkLoad
// where the engine offers it); Check runs any op sequence
// against that model, for the engines' fuzz test.
package storagetest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/storage"
)

// Run runs the conformance suite against engines made by newEngine, which
// must return a new, empty engine on every call.
func Run(t *testing.T, newEngine func() storage.Engine) {
	t.Run("get_put_delete", func(t *testing.T) { testGetPutDelete(t, newEngine) })
	t.Run("indexes", func(t *testing.T) { testIndexes(t, newEngine) })
	t.Run("scan_bounds", func(t *testing.T) { testScanBounds(t, newEngine) })
	t.Run("len_bytes", func(t *testing.T) { testLenBytes(t, newEngine) })
	t.Run("returned_slices_stable", func(t *testing.T) { testReturnedSlicesStable(t, newEngine) })
	t.Run("view_slices_live_until_release", func(t *testing.T) { testViewSlicesLiveUntilRelease(t, newEngine) })
	t.Run("put_copies_arguments", func(t *testing.T) { testPutCopiesArguments(t, newEngine) })
	t.Run("snapshot_isolation", func(t *testing.T) { testSnapshotIsolation(t, newEngine) })
	t.Run("snapshot_survives_writes", func(t *testing.T) { testSnapshotSurvivesWrites(t, newEngine) })
	t.Run("snapshot_concurrent_reads", func(t *testing.T) { testSnapshotConcurrentReads(t, newEngine) })
	t.Run("concurrent_readers", func(t *testing.T) { testConcurrentReaders(t, newEngine) })
	t.Run("model_random", func(t *testing.T) { testModelRandom(t, newEngine) })
	t.Run("bulk_load", func(t *testing.T) { testBulkLoad(t, newEngine) })
}

// mutation is one write of a table test; del makes it a Delete.
type mutation struct {
	del   bool
	idx   uint64
	key   string
	value string
}

func put(idx uint64, key, value string) mutation {
	return mutation{idx: idx, key: key, value: value}
}

func del(idx uint64, key string) mutation {
	return mutation{del: true, idx: idx, key: key}
}

// apply performs m on e and returns the previous entry.
func (m mutation) apply(e storage.Engine) (storage.Entry, bool) {
	if m.del {
		return e.Delete(m.idx, []byte(m.key))
	}
	return e.Put(m.idx, []byte(m.key), []byte(m.value))
}

// want is an expected lookup result: found, and if so the value and indexes.
type want struct {
	found  bool
	value  string
	create uint64
	mod    uint64
}

func found(value string, create, mod uint64) want {
	return want{found: true, value: value, create: create, mod: mod}
}

// absent is the result for a key that is not there.
func absent() want { return want{} }

// mustMatch fails t unless (got, ok) is w for key.
func mustMatch(t *testing.T, what string, key string, got storage.Entry, ok bool, w want) {
	t.Helper()
	if ok != w.found {
		t.Fatalf("%s(%q): found = %t, want %t", what, key, ok, w.found)
	}
	if !ok {
		return
	}
	if string(got.Key) != key || string(got.Value) != w.value || got.CreateIndex != w.create || got.ModIndex != w.mod {
		t.Fatalf("%s(%q) = %s, want {key %q value %q create %d mod %d}",
			what, key, format(got), key, w.value, w.create, w.mod)
	}
}

// applyAll applies muts to e in order.
func applyAll(e storage.Engine, muts ...mutation) {
	for _, m := range muts {
		m.apply(e)
	}
}

func testGetPutDelete(t *testing.T, newEngine func() storage.Engine) {
	tests := []struct {
		name string
		muts []mutation
		get  string
		want want
	}{
		{name: "missing_in_empty_engine", get: "a", want: absent()},
		{name: "put_then_get", muts: []mutation{put(1, "a", "1")}, get: "a", want: found("1", 1, 1)},
		{name: "other_key_missing", muts: []mutation{put(1, "a", "1")}, get: "b", want: absent()},
		{name: "prefix_is_another_key", muts: []mutation{put(1, "ab", "1")}, get: "a", want: absent()},
		{name: "longer_key_is_another_key", muts: []mutation{put(1, "a", "1")}, get: "ab", want: absent()},
		{name: "overwrite", muts: []mutation{put(1, "a", "1"), put(2, "a", "2")}, get: "a", want: found("2", 1, 2)},
		{name: "delete", muts: []mutation{put(1, "a", "1"), del(2, "a")}, get: "a", want: absent()},
		{name: "delete_missing_is_noop", muts: []mutation{put(1, "a", "1"), del(2, "b")}, get: "a", want: found("1", 1, 1)},
		{name: "delete_leaves_others", muts: []mutation{put(1, "a", "1"), put(2, "b", "2"), del(3, "a")}, get: "b", want: found("2", 2, 2)},
		{name: "empty_value", muts: []mutation{put(1, "a", "")}, get: "a", want: found("", 1, 1)},
		{name: "empty_key", muts: []mutation{put(1, "", "v")}, get: "", want: found("v", 1, 1)},
		{name: "binary_key", muts: []mutation{put(1, "\x00\xff", "v"), put(2, "\x00", "w")}, get: "\x00\xff", want: found("v", 1, 1)},
		{name: "value_grows_and_shrinks", muts: []mutation{put(1, "a", "x"), put(2, "a", "xxxxxxxxxxxxxxxxxxxx"), put(3, "a", "y")}, get: "a", want: found("y", 1, 3)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine()
			applyAll(e, tt.muts...)
			got, ok := e.Get([]byte(tt.get))
			mustMatch(t, "Get", tt.get, got, ok, tt.want)
		})
	}
}

func testIndexes(t *testing.T, newEngine func() storage.Engine) {
	// Each step is a mutation and the previous entry it must return.
	type step struct {
		mut  mutation
		prev want
	}
	tests := []struct {
		name  string
		steps []step
		get   string
		want  want
	}{
		{
			name:  "new_key_create_equals_mod",
			steps: []step{{put(7, "a", "1"), absent()}},
			get:   "a", want: found("1", 7, 7),
		},
		{
			name:  "create_kept_on_overwrite",
			steps: []step{{put(1, "a", "1"), absent()}, {put(5, "a", "2"), found("1", 1, 1)}, {put(9, "a", "3"), found("2", 1, 5)}},
			get:   "a", want: found("3", 1, 9),
		},
		{
			name:  "overwrite_at_same_index",
			steps: []step{{put(4, "a", "1"), absent()}, {put(4, "a", "2"), found("1", 4, 4)}},
			get:   "a", want: found("2", 4, 4),
		},
		{
			name:  "delete_returns_entry",
			steps: []step{{put(1, "a", "1"), absent()}, {put(2, "a", "2"), found("1", 1, 1)}, {del(3, "a"), found("2", 1, 2)}},
			get:   "a", want: absent(),
		},
		{
			name:  "delete_missing_returns_nothing",
			steps: []step{{del(1, "a"), absent()}},
			get:   "a", want: absent(),
		},
		{
			name:  "delete_then_put_creates_anew",
			steps: []step{{put(1, "a", "1"), absent()}, {put(2, "a", "2"), found("1", 1, 1)}, {del(3, "a"), found("2", 1, 2)}, {put(4, "a", "3"), absent()}},
			get:   "a", want: found("3", 4, 4),
		},
		{
			name:  "delete_then_put_at_same_index",
			steps: []step{{put(1, "a", "1"), absent()}, {del(2, "a"), found("1", 1, 1)}, {put(2, "a", "2"), absent()}},
			get:   "a", want: found("2", 2, 2),
		},
		{
			name:  "keys_have_own_indexes",
			steps: []step{{put(1, "a", "1"), absent()}, {put(2, "b", "1"), absent()}, {put(3, "a", "2"), found("1", 1, 1)}},
			get:   "b", want: found("1", 2, 2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine()
			for i, s := range tt.steps {
				prev, ok := s.mut.apply(e)
				mustMatch(t, fmt.Sprintf("step %d prev", i), s.mut.key, prev, ok, s.prev)
			}
			got, ok := e.Get([]byte(tt.get))
			mustMatch(t, "Get", tt.get, got, ok, tt.want)
		})
	}
}

func testScanBounds(t *testing.T, newEngine func() storage.Engine) {
	keys := []string{"a", "b", "c", "d", "e"}
	tests := []struct {
		name       string
		start, end []byte
		reverse    bool
		limit      int
		want       []string
	}{
		{name: "unbounded", want: keys},
		{name: "unbounded_reverse", reverse: true, want: []string{"e", "d", "c", "b", "a"}},
		{name: "start_on_key", start: []byte("b"), want: []string{"b", "c", "d", "e"}},
		{name: "start_between_keys", start: []byte("bb"), want: []string{"c", "d", "e"}},
		{name: "end_on_key_excluded", end: []byte("d"), want: []string{"a", "b", "c"}},
		{name: "end_between_keys", end: []byte("cc"), want: []string{"a", "b", "c"}},
		{name: "both_bounds", start: []byte("b"), end: []byte("d"), want: []string{"b", "c"}},
		{name: "both_bounds_reverse", start: []byte("b"), end: []byte("d"), reverse: true, want: []string{"c", "b"}},
		{name: "start_only_reverse", start: []byte("c"), reverse: true, want: []string{"e", "d", "c"}},
		{name: "end_on_key_reverse", end: []byte("d"), reverse: true, want: []string{"c", "b", "a"}},
		{name: "end_between_keys_reverse", end: []byte("cc"), reverse: true, want: []string{"c", "b", "a"}},
		{name: "start_equals_end", start: []byte("c"), end: []byte("c")},
		{name: "start_equals_end_reverse", start: []byte("c"), end: []byte("c"), reverse: true},
		{name: "start_after_end", start: []byte("d"), end: []byte("b")},
		{name: "start_after_end_reverse", start: []byte("d"), end: []byte("b"), reverse: true},
		{name: "empty_range_between_keys", start: []byte("bb"), end: []byte("bz")},
		{name: "empty_range_between_keys_reverse", start: []byte("bb"), end: []byte("bz"), reverse: true},
		{name: "start_after_last", start: []byte("z")},
		{name: "start_after_last_reverse", start: []byte("z"), reverse: true},
		{name: "end_before_first", end: []byte("0")},
		{name: "end_before_first_reverse", end: []byte("0"), reverse: true},
		{name: "empty_start_is_lowest", start: []byte{}, want: keys},
		{name: "empty_end_is_empty_range", end: []byte{}},
		{name: "empty_end_is_empty_range_reverse", end: []byte{}, reverse: true},
		{name: "early_stop", limit: 2, want: []string{"a", "b"}},
		{name: "early_stop_reverse", limit: 2, reverse: true, want: []string{"e", "d"}},
		{name: "early_stop_bounded", start: []byte("b"), end: []byte("e"), limit: 1, want: []string{"b"}},
		{name: "early_stop_bounded_reverse", start: []byte("b"), end: []byte("e"), limit: 1, reverse: true, want: []string{"d"}},
		{name: "stop_on_last_entry", start: []byte("d"), limit: 2, want: []string{"d", "e"}},
	}
	e := newEngine()
	for i, k := range keys {
		e.Put(uint64(i+1), []byte(k), []byte("v"+k))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := collect(e, tt.start, tt.end, tt.reverse, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var gotKeys []string
			for _, en := range got {
				gotKeys = append(gotKeys, string(en.Key))
				if want := "v" + string(en.Key); string(en.Value) != want {
					t.Errorf("value of %q = %q, want %q", en.Key, en.Value, want)
				}
			}
			if fmt.Sprint(gotKeys) != fmt.Sprint(tt.want) {
				t.Fatalf("Scan(%s, %s, reverse=%t) keys = %q, want %q",
					bound(tt.start), bound(tt.end), tt.reverse, gotKeys, tt.want)
			}
		})
	}
	t.Run("empty_engine", func(t *testing.T) {
		for _, reverse := range []bool{false, true} {
			got, err := collect(newEngine(), nil, nil, reverse, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 0 {
				t.Fatalf("Scan of empty engine (reverse=%t) returned %d entries", reverse, len(got))
			}
		}
	})
}

func testLenBytes(t *testing.T, newEngine func() storage.Engine) {
	tests := []struct {
		name      string
		mut       mutation
		wantLen   int
		wantBytes int64
	}{
		{name: "put_new", mut: put(1, "ab", "xyz"), wantLen: 1, wantBytes: 5},
		{name: "put_second", mut: put(2, "c", ""), wantLen: 2, wantBytes: 6},
		{name: "overwrite_larger", mut: put(3, "ab", "xyzxyz"), wantLen: 2, wantBytes: 9},
		{name: "overwrite_smaller", mut: put(4, "ab", ""), wantLen: 2, wantBytes: 3},
		{name: "empty_key_and_value", mut: put(5, "", ""), wantLen: 3, wantBytes: 3},
		{name: "delete_missing", mut: del(6, "zz"), wantLen: 3, wantBytes: 3},
		{name: "delete_empty_key", mut: del(7, ""), wantLen: 2, wantBytes: 3},
		{name: "delete", mut: del(8, "ab"), wantLen: 1, wantBytes: 1},
		{name: "delete_last", mut: del(9, "c"), wantLen: 0, wantBytes: 0},
		{name: "put_after_empty", mut: put(10, "d", "12"), wantLen: 1, wantBytes: 3},
	}
	e := newEngine()
	if e.Len() != 0 || e.Bytes() != 0 {
		t.Fatalf("new engine: Len() = %d, Bytes() = %d, want 0, 0", e.Len(), e.Bytes())
	}
	// The steps run in order on one engine: each row's figures are after it.
	for _, tt := range tests {
		tt.mut.apply(e)
		if e.Len() != tt.wantLen || e.Bytes() != tt.wantBytes {
			t.Fatalf("after %s: Len() = %d, Bytes() = %d, want %d, %d",
				tt.name, e.Len(), e.Bytes(), tt.wantLen, tt.wantBytes)
		}
	}
}

// testReturnedSlicesStable checks what an engine's Get, Put and Delete
// return: valid for as long as the caller holds it, whatever the engine does
// after (an engine's Scan entries are valid only during fn, see
// testViewSlicesLiveUntilRelease for a View's).
func testReturnedSlicesStable(t *testing.T, newEngine func() storage.Engine) {
	e := newEngine()
	e.Put(1, []byte("a"), []byte("first"))
	got, _ := e.Get([]byte("a"))
	prev, _ := e.Put(2, []byte("a"), []byte("SECOND"))
	e.Put(3, []byte("a"), []byte("third!"))
	deleted, _ := e.Delete(4, []byte("a"))
	// Churn: records of the same size reuse the slots the writes above freed.
	for i := range 100 {
		e.Put(uint64(5+i), []byte("a"), []byte(fmt.Sprintf("r%05d", i)))
		e.Put(uint64(5+i), []byte(fmt.Sprintf("%c", 'b'+i%20)), []byte(fmt.Sprintf("s%05d", i)))
	}
	for _, c := range []struct {
		name  string
		got   storage.Entry
		value string
	}{
		{"get", got, "first"},
		{"put_prev", prev, "first"},
		{"delete_prev", deleted, "third!"},
	} {
		if string(c.got.Key) != "a" || string(c.got.Value) != c.value {
			t.Errorf("entry from %s changed after later writes: %s, want key %q value %q",
				c.name, format(c.got), "a", c.value)
		}
	}
}

// testViewSlicesLiveUntilRelease checks the lifetime of what a View
// returns: entries from its Get and Scan keep their bytes while the engine
// overwrites and deletes their keys and churns through enough writes to
// reuse every slot it freed, until the View is released; and appending to
// a returned slice never changes the View.
func testViewSlicesLiveUntilRelease(t *testing.T, newEngine func() storage.Engine) {
	const n = 200
	e := newEngine()
	value := func(round, i int) []byte { return []byte(fmt.Sprintf("round%d-value%04d", round, i)) }
	idx := uint64(0)
	for i := range n {
		idx++
		e.Put(idx, seqKey(i), value(0, i))
	}
	v := e.Snapshot()
	defer storage.Release(v)
	type held struct {
		what string
		i    int
		got  storage.Entry
	}
	var kept []held
	i := 0
	v.Scan(nil, nil, false, func(en storage.Entry) bool {
		kept = append(kept, held{"scan", i, en})
		i++
		return true
	})
	for i := range n {
		en, ok := v.Get(seqKey(i))
		if !ok {
			t.Fatalf("view Get(%q) found nothing", seqKey(i))
		}
		kept = append(kept, held{"get", i, en})
	}
	if len(kept) != 2*n {
		t.Fatalf("view scan returned %d entries, want %d", len(kept)-n, n)
	}
	// Appending to a returned slice must copy, not write into the engine.
	_ = append(kept[0].got.Key, "XXXX"...)
	_ = append(kept[0].got.Value, "XXXX"...)
	for round := 1; round <= 5; round++ {
		for i := range n {
			idx++
			if round%2 == 0 {
				e.Delete(idx, seqKey(i))
			} else {
				e.Put(idx, seqKey(i), value(round, i))
			}
		}
		// A second View, released at once, must not free what v holds.
		storage.Release(e.Snapshot())
	}
	for _, k := range kept {
		if !bytes.Equal(k.got.Key, seqKey(k.i)) || !bytes.Equal(k.got.Value, value(0, k.i)) ||
			k.got.CreateIndex != uint64(k.i+1) || k.got.ModIndex != uint64(k.i+1) {
			t.Fatalf("entry %d from the view's %s changed while the view was live: %s, want key %q value %q index %d",
				k.i, k.what, format(k.got), seqKey(k.i), value(0, k.i), k.i+1)
		}
	}
	if err := (frozenView{v: v, m: modelOf(n, value)}).check(); err != nil {
		t.Fatalf("view after the engine churned: %v", err)
	}
}

// modelOf returns a model holding seqKey(i) = value(0, i) at index i+1 for
// i < n.
func modelOf(n int, value func(round, i int) []byte) *model {
	m := newModel()
	for i := range n {
		m.put(uint64(i+1), seqKey(i), value(0, i))
	}
	return m
}

func testPutCopiesArguments(t *testing.T, newEngine func() storage.Engine) {
	e := newEngine()
	key, value := []byte("a"), []byte("first")
	e.Put(1, key, value)
	copy(key, "b")
	copy(value, "XXXXX")
	got, ok := e.Get([]byte("a"))
	mustMatch(t, "get after the caller reused its buffers", "a", got, ok, found("first", 1, 1))
	if _, ok := e.Get([]byte("b")); ok {
		t.Fatalf("get(%q) found a key only the caller's reused buffer held", "b")
	}
}

func testSnapshotIsolation(t *testing.T, newEngine func() storage.Engine) {
	t.Run("writes_after_snapshot_hidden", func(t *testing.T) {
		e := newEngine()
		applyAll(e, put(1, "a", "1"), put(2, "b", "2"), put(3, "c", "3"))
		v := e.Snapshot()
		applyAll(e, put(4, "a", "changed"), del(5, "b"), put(6, "d", "4"))

		for _, c := range []struct {
			key  string
			view want
			eng  want
		}{
			{"a", found("1", 1, 1), found("changed", 1, 4)},
			{"b", found("2", 2, 2), absent()},
			{"c", found("3", 3, 3), found("3", 3, 3)},
			{"d", absent(), found("4", 6, 6)},
		} {
			got, ok := v.Get([]byte(c.key))
			mustMatch(t, "view Get", c.key, got, ok, c.view)
			got, ok = e.Get([]byte(c.key))
			mustMatch(t, "engine Get", c.key, got, ok, c.eng)
		}
		if v.Len() != 3 || v.Bytes() != 6 {
			t.Fatalf("view: Len() = %d, Bytes() = %d, want 3, 6", v.Len(), v.Bytes())
		}
		if e.Len() != 3 || e.Bytes() != 12 { // a=changed, c=3, d=4
			t.Fatalf("engine: Len() = %d, Bytes() = %d, want 3, 12", e.Len(), e.Bytes())
		}
		got, err := collect(v, nil, nil, true, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || string(got[0].Key) != "c" || string(got[2].Key) != "a" || string(got[2].Value) != "1" {
			t.Fatalf("view reverse scan = %v, want c, b, a with a=1", got)
		}
	})
	t.Run("empty_engine", func(t *testing.T) {
		e := newEngine()
		v := e.Snapshot()
		applyAll(e, put(1, "a", "1"))
		if _, ok := v.Get([]byte("a")); ok || v.Len() != 0 || v.Bytes() != 0 {
			t.Fatalf("view of empty engine shows a later write: Len() = %d, Bytes() = %d", v.Len(), v.Bytes())
		}
	})
	t.Run("snapshots_independent", func(t *testing.T) {
		e := newEngine()
		applyAll(e, put(1, "a", "1"))
		v1 := e.Snapshot()
		applyAll(e, put(2, "a", "2"))
		v2 := e.Snapshot()
		applyAll(e, put(3, "a", "3"))
		for _, c := range []struct {
			name string
			r    storage.Reader
			want want
		}{
			{"first", v1, found("1", 1, 1)},
			{"second", v2, found("2", 1, 2)},
			{"engine", e, found("3", 1, 3)},
		} {
			got, ok := c.r.Get([]byte("a"))
			mustMatch(t, c.name+" Get", "a", got, ok, c.want)
		}
	})
}

// testSnapshotSurvivesWrites takes views of a large engine and rewrites the
// engine many times over, deleting every key; the views must not change.
func testSnapshotSurvivesWrites(t *testing.T, newEngine func() storage.Engine) {
	const n = 3000
	e := newEngine()
	m := newModel()
	idx := uint64(0)
	write := func(key, value []byte) {
		idx++
		if value == nil {
			e.Delete(idx, key)
			m.delete(key)
			return
		}
		e.Put(idx, key, value)
		m.put(idx, key, value)
	}
	for i := range n {
		write(seqKey(i), []byte(fmt.Sprintf("v%d", i)))
	}
	views := []frozenView{newFrozenView(e, m)}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 4 {
		for range 5 * n {
			k := seqKey(rng.IntN(2 * n))
			if rng.IntN(3) == 0 {
				write(k, nil)
			} else {
				write(k, []byte(fmt.Sprintf("r%d-%d", round, rng.IntN(1000))))
			}
		}
		views = append(views, newFrozenView(e, m))
	}
	for i := range 2 * n {
		write(seqKey(i), nil)
	}
	if e.Len() != 0 || e.Bytes() != 0 {
		t.Fatalf("engine after deleting every key: Len() = %d, Bytes() = %d", e.Len(), e.Bytes())
	}
	for i, fv := range views {
		if err := fv.check(); err != nil {
			t.Fatalf("view %d: %v", i, err)
		}
	}
}

// testSnapshotConcurrentReads reads views from several goroutines while the
// engine keeps changing and taking new views (meant for -race).
func testSnapshotConcurrentReads(t *testing.T, newEngine func() storage.Engine) {
	const n = 1000
	e := newEngine()
	m := newModel()
	for i := range n {
		e.Put(uint64(i+1), seqKey(i), []byte(fmt.Sprintf("v%d", i)))
		m.put(uint64(i+1), seqKey(i), []byte(fmt.Sprintf("v%d", i)))
	}
	done := make(chan struct{})
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	read := func(fv frozenView, seed uint64) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 0))
		for pass := 0; ; pass++ {
			// Every reader finishes at least two passes, so reads overlap
			// the writes below.
			if pass >= 2 {
				select {
				case <-done:
					return
				default:
				}
			}
			if err := readPass(fv, rng); err != nil {
				errs <- err
				return
			}
		}
	}
	wg.Add(2)
	go read(frozenView{v: e.Snapshot(), m: m.clone()}, 1)
	go read(frozenView{v: e.Snapshot(), m: m.clone()}, 2)
	rng := rand.New(rand.NewPCG(3, 4))
	idx := uint64(n)
	for round := range 2 {
		for range 3 * n {
			idx++
			k := seqKey(rng.IntN(2 * n))
			if rng.IntN(4) == 0 {
				e.Delete(idx, k)
				m.delete(k)
			} else {
				v := []byte(fmt.Sprintf("w%d-%d", round, idx))
				e.Put(idx, k, v)
				m.put(idx, k, v)
			}
		}
		wg.Add(1)
		go read(frozenView{v: e.Snapshot(), m: m.clone()}, uint64(10+round))
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// readPass reads a view in a few ways and compares with its model.
func readPass(fv frozenView, rng *rand.Rand) error {
	if err := sameCounts(fv.v, fv.m); err != nil {
		return err
	}
	for range 50 {
		k := seqKey(rng.IntN(2500))
		got, ok := fv.v.Get(k)
		want, wantOK := fv.m.get(k)
		if err := sameResult(got, ok, want, wantOK); err != nil {
			return fmt.Errorf("get(%q): %w", k, err)
		}
	}
	start := seqKey(rng.IntN(2500))
	reverse := rng.IntN(2) == 0
	got, err := collect(fv.v, start, nil, reverse, 100)
	if err != nil {
		return err
	}
	if err := sameEntries(got, fv.m.scan(start, nil, reverse, 100)); err != nil {
		return fmt.Errorf("scan from %q (reverse=%t): %w", start, reverse, err)
	}
	return nil
}

// testConcurrentReaders reads one engine from several goroutines at once,
// with no writer, including Snapshot calls, which count as reads.
func testConcurrentReaders(t *testing.T, newEngine func() storage.Engine) {
	const n = 2000
	e := newEngine()
	m := newModel()
	for i := range n {
		e.Put(uint64(i+1), seqKey(i), []byte(fmt.Sprintf("v%d", i)))
		m.put(uint64(i+1), seqKey(i), []byte(fmt.Sprintf("v%d", i)))
	}
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 20 {
				if err := readPass(frozenView{v: e, m: m}, rng); err != nil {
					errs <- err
					return
				}
				if err := readPass(frozenView{v: e.Snapshot(), m: m}, rng); err != nil {
					errs <- fmt.Errorf("snapshot: %w", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// seqKey returns the i'th key of an ordered test key space.
func seqKey(i int) []byte {
	return []byte(fmt.Sprintf("key%06d", i))
}

// testModelRandom checks thousands of random ops against the model, for a
// few fixed seeds and one new seed per run; a failure names its seed.
func testModelRandom(t *testing.T, newEngine func() storage.Engine) {
	seeds := []uint64{1, 2, 3, uint64(time.Now().UnixNano())}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed_%d", seed), func(t *testing.T) {
			ops := randomOps(rand.New(rand.NewPCG(seed, seed)), 4000)
			if err := Check(newEngine(), ops); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		})
	}
}

// randomOps returns n random ops over a small key space (keys of up to three
// bytes from {0x00, 'a', 'b', 0xff}, the empty key included), so that
// overwrites, deletes of present keys and prefix keys are all common.
func randomOps(rng *rand.Rand, n int) []Op {
	ops := make([]Op, 0, n)
	for range n {
		var op Op
		switch r := rng.IntN(100); {
		case r < 35:
			op = Op{Kind: OpPut, Key: randomKey(rng), Value: randomValue(rng), SameIndex: rng.IntN(8) == 0}
		case r < 50:
			op = Op{Kind: OpDelete, Key: randomKey(rng), SameIndex: rng.IntN(8) == 0}
		case r < 70:
			op = Op{Kind: OpGet, Key: randomKey(rng)}
		case r < 96:
			op = Op{Kind: OpScan, Start: randomBound(rng), End: randomBound(rng), Reverse: rng.IntN(2) == 0}
			if rng.IntN(3) == 0 {
				op.Limit = 1 + rng.IntN(5)
			}
		case r < 99:
			op = Op{Kind: OpSnapshot}
		default:
			op = Op{Kind: OpCheckViews}
		}
		ops = append(ops, op)
	}
	return ops
}

// keyBytes are the bytes random keys are made of.
const keyBytes = "\x00ab\xff"

func randomKey(rng *rand.Rand) []byte {
	k := make([]byte, rng.IntN(4))
	for i := range k {
		k[i] = keyBytes[rng.IntN(len(keyBytes))]
	}
	return k
}

func randomBound(rng *rand.Rand) []byte {
	if rng.IntN(4) == 0 {
		return nil
	}
	return randomKey(rng)
}

func randomValue(rng *rand.Rand) []byte {
	return bytes.Repeat([]byte{byte('0' + rng.IntN(10))}, rng.IntN(9))
}
