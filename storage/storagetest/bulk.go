package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cubekv/cubekv/storage"
)

// testBulkLoad covers storage.Load and, for engines that offer it,
// BulkLoad: what a load builds, what it refuses, and that a refused load
// leaves the engine empty.
func testBulkLoad(t *testing.T, newEngine func() storage.Engine) {
	t.Run("contents", func(t *testing.T) { testBulkLoadContents(t, newEngine) })
	t.Run("then_writes", func(t *testing.T) { testBulkLoadThenWrites(t, newEngine) })
	t.Run("refuses_bad_streams", func(t *testing.T) { testBulkLoadRefuses(t, newEngine) })
	t.Run("refuses_non_empty", func(t *testing.T) { testBulkLoadNonEmpty(t, newEngine) })
	t.Run("views", func(t *testing.T) { testBulkLoadViews(t, newEngine) })
}

// bulkEntries returns n entries with ascending keys seqKey(i), values of
// assorted sizes (empty, small, and over 8 KiB every 997th) and indexes
// with CreateIndex <= ModIndex.
func bulkEntries(n int) []storage.Entry {
	out := make([]storage.Entry, n)
	for i := range out {
		size := i % 150
		if i%997 == 5 {
			size = 9000 + i%50
		}
		create := uint64(2*i + 1)
		out[i] = storage.Entry{
			Key:         seqKey(i),
			Value:       bytes.Repeat([]byte{byte(i)}, size),
			CreateIndex: create,
			ModIndex:    create + uint64(i%3),
		}
	}
	return out
}

// stream returns a next function for Load that hands out entries in order
// through one key and one value buffer, reused from call to call, so a
// loader that keeps the caller's slices shows wrong contents; after them it
// returns err if it is not nil, else the end.
func stream(entries []storage.Entry, err error) func() (storage.Entry, bool, error) {
	var key, value []byte
	i := 0
	return func() (storage.Entry, bool, error) {
		if i == len(entries) {
			return storage.Entry{}, false, err
		}
		e := entries[i]
		i++
		key = append(key[:0], e.Key...)
		value = append(value[:0], e.Value...)
		e.Key, e.Value = key, value
		return e, true, nil
	}
}

// modelOfEntries returns a model holding entries as they are.
func modelOfEntries(entries []storage.Entry) *model {
	m := newModel()
	for _, e := range entries {
		m.entries[string(e.Key)] = cloneEntry(e)
		m.bytes += int64(len(e.Key) + len(e.Value))
	}
	return m
}

// testBulkLoadContents loads streams of every length around the B-tree's
// node sizes (a leaf holds up to 63 items) and checks every entry, both
// scan orders and the counts.
func testBulkLoadContents(t *testing.T, newEngine func() storage.Engine) {
	for _, n := range []int{0, 1, 2, 31, 32, 62, 63, 64, 65, 95, 96, 127, 128, 129, 191, 192, 4096 + 17, 30_000} {
		entries := bulkEntries(n)
		e := newEngine()
		if err := storage.Load(e, stream(entries, nil)); err != nil {
			t.Fatalf("n=%d: Load: %v", n, err)
		}
		m := modelOfEntries(entries)
		if err := sameCounts(e, m); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if err := sameContents(e, m); err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		// Bounded scans start from the index's search, not its ends.
		for _, b := range [][2]int{{0, n}, {n / 3, n / 2}, {n / 2, n / 2}, {n - 1, n}} {
			if n == 0 {
				break
			}
			start, end := seqKey(b[0]), seqKey(b[1])
			for _, reverse := range []bool{false, true} {
				got, err := collect(e, start, end, reverse, 0)
				if err != nil {
					t.Fatal(err)
				}
				if err := sameEntries(got, m.scan(start, end, reverse, 0)); err != nil {
					t.Fatalf("n=%d: scan(%q, %q, reverse=%t): %v", n, start, end, reverse, err)
				}
			}
		}
	}
}

// testBulkLoadThenWrites loads a stream over the random ops' key space and
// then runs random ops against it and the model: overwrites and deletes of
// loaded keys, snapshots, scans.
func testBulkLoadThenWrites(t *testing.T, newEngine func() storage.Engine) {
	seeds := []uint64{1, 2, uint64(time.Now().UnixNano())}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed_%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			var keys [][]byte
			var gen func(prefix []byte)
			gen = func(prefix []byte) {
				keys = append(keys, prefix)
				if len(prefix) == 3 {
					return
				}
				for i := range len(keyBytes) {
					gen(append(slices.Clip(prefix), keyBytes[i]))
				}
			}
			gen([]byte{})
			slices.SortFunc(keys, bytes.Compare)
			var entries []storage.Entry
			idx := uint64(0)
			for _, k := range keys {
				if rng.IntN(3) == 0 {
					continue
				}
				idx++
				create := idx
				idx += uint64(rng.IntN(3))
				entries = append(entries, storage.Entry{Key: k, Value: randomValue(rng), CreateIndex: create, ModIndex: idx})
			}
			e := newEngine()
			if err := storage.Load(e, stream(entries, nil)); err != nil {
				t.Fatalf("Load: %v", err)
			}
			c := checker{e: e, m: modelOfEntries(entries), idx: idx}
			for i, op := range randomOps(rng, 3000) {
				if err := c.apply(op); err != nil {
					t.Fatalf("seed %d: op %d, %v: %v", seed, i, op, err)
				}
				if err := sameCounts(e, c.m); err != nil {
					t.Fatalf("seed %d: op %d, %v: %v", seed, i, op, err)
				}
			}
			if err := sameContents(e, c.m); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if err := c.checkViews(); err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
		})
	}
}

// testBulkLoadRefuses feeds streams that break the order at the start,
// within the first leaf and deep into the load, and streams whose source
// fails. Load must return the error; a BulkLoader must be left empty and
// must load a good stream afterwards.
func testBulkLoadRefuses(t *testing.T, newEngine func() storage.Engine) {
	good := bulkEntries(3000)
	errSource := errors.New("source failed")
	type bad struct {
		name    string
		entries []storage.Entry
		err     error // the stream's own error after entries
		want    error
	}
	var cases []bad
	for _, at := range []int{1, 40, 2500} {
		swapped := slices.Clone(good[:at+1])
		swapped[at-1], swapped[at] = swapped[at], swapped[at-1]
		cases = append(cases, bad{name: fmt.Sprintf("descending_at_%d", at), entries: append(swapped, good[at+1:]...), want: storage.ErrUnordered})
		repeated := slices.Clone(good[:at+1])
		repeated[at].Key = repeated[at-1].Key
		cases = append(cases, bad{name: fmt.Sprintf("repeated_at_%d", at), entries: append(repeated, good[at+1:]...), want: storage.ErrUnordered})
		indexes := slices.Clone(good)
		indexes[at].CreateIndex = indexes[at].ModIndex + 1
		cases = append(cases, bad{name: fmt.Sprintf("create_after_mod_at_%d", at), entries: indexes, want: storage.ErrUnordered})
		cases = append(cases, bad{name: fmt.Sprintf("source_fails_after_%d", at), entries: good[:at], err: errSource, want: errSource})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine()
			err := storage.Load(e, stream(c.entries, c.err))
			if !errors.Is(err, c.want) {
				t.Fatalf("Load = %v, want %v", err, c.want)
			}
			if _, ok := e.(storage.BulkLoader); !ok {
				return // Load's fallback keeps what it put; the caller discards it
			}
			if err := sameCounts(e, newModel()); err != nil {
				t.Fatalf("after a refused load: %v", err)
			}
			if err := sameContents(e, newModel()); err != nil {
				t.Fatalf("after a refused load: %v", err)
			}
			for _, en := range good[:10] {
				if got, ok := e.Get(en.Key); ok {
					t.Fatalf("after a refused load: Get(%q) = %s", en.Key, format(got))
				}
			}
			if err := storage.Load(e, stream(good, nil)); err != nil {
				t.Fatalf("Load of a good stream after a refused one: %v", err)
			}
			if err := sameContents(e, modelOfEntries(good)); err != nil {
				t.Fatalf("good load after a refused one: %v", err)
			}
		})
	}
}

// testBulkLoadNonEmpty checks that Load refuses an engine holding keys and
// leaves it as it was.
func testBulkLoadNonEmpty(t *testing.T, newEngine func() storage.Engine) {
	e := newEngine()
	e.Put(1, []byte("held"), []byte("v"))
	if err := storage.Load(e, stream(bulkEntries(10), nil)); !errors.Is(err, storage.ErrNotEmpty) {
		t.Fatalf("Load into a non-empty engine = %v, want %v", err, storage.ErrNotEmpty)
	}
	m := newModel()
	m.put(1, []byte("held"), []byte("v"))
	if err := sameContents(e, m); err != nil {
		t.Fatal(err)
	}
}

// testBulkLoadViews checks that a View taken before a load stays empty,
// and a View taken after holds the load while the engine changes.
func testBulkLoadViews(t *testing.T, newEngine func() storage.Engine) {
	e := newEngine()
	before := e.Snapshot()
	entries := bulkEntries(500)
	if err := storage.Load(e, stream(entries, nil)); err != nil {
		t.Fatal(err)
	}
	if err := sameContents(before, newModel()); err != nil {
		t.Fatalf("view taken before the load: %v", err)
	}
	storage.Release(before)
	m := modelOfEntries(entries)
	after := newFrozenView(e, m)
	for i, en := range entries {
		if i%2 == 0 {
			e.Delete(uint64(2000+i), en.Key)
		} else {
			e.Put(uint64(2000+i), en.Key, []byte("overwritten"))
		}
	}
	if err := after.check(); err != nil {
		t.Fatalf("view taken after the load: %v", err)
	}
	storage.Release(after.v)
}
