package storage_test

import (
	"bytes"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/storage"
)

// loadModes are the two ways to fill an engine from a restore's ascending
// stream the load benchmarks compare: "put", one Put per entry (two for an
// entry changed after it was created), as restore did before BulkLoad, and
// "bulk", storage.Load.
var loadModes = []string{"put", "bulk"}

// sortedEntries returns n benchmark entries (benchKey(i) = benchValue(i))
// in key order. Every third was changed after it was created, as in a
// snapshot of a store with overwrites.
func sortedEntries(n int) []storage.Entry {
	out := make([]storage.Entry, n)
	for i := range out {
		mod := uint64(i + 1)
		if i%3 == 0 {
			mod += uint64(n)
		}
		out[i] = storage.Entry{Key: benchKey(i), Value: benchValue(i), CreateIndex: uint64(i + 1), ModIndex: mod}
	}
	slices.SortFunc(out, func(a, b storage.Entry) int { return bytes.Compare(a.Key, b.Key) })
	return out
}

// fill loads entries into the empty engine e in the given mode.
func fill(tb testing.TB, e storage.Engine, mode string, entries []storage.Entry) {
	tb.Helper()
	if mode == "put" {
		for _, en := range entries {
			e.Put(en.CreateIndex, en.Key, en.Value)
			if en.ModIndex != en.CreateIndex {
				e.Put(en.ModIndex, en.Key, en.Value)
			}
		}
	} else {
		i := 0
		err := storage.Load(e, func() (storage.Entry, bool, error) {
			if i == len(entries) {
				return storage.Entry{}, false, nil
			}
			i++
			return entries[i-1], true, nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if e.Len() != len(entries) {
		tb.Fatalf("loaded %d entries, Len() = %d", len(entries), e.Len())
	}
}

// heapObjects returns the bytes of heap objects, live or not yet swept.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkBulkLoad fills an empty engine with 1,000,000 entries (16-byte
// keys, 100-byte values) in key order, as a restore does, by Put and by
// storage.Load. It reports the load's time (load-ms), what the entries hold
// after GC (heldB/entry, as BenchmarkHeapPerEntry), and the peak of heap
// objects during the load, sampled every millisecond, over that
// (peak/held). Run with -benchtime=1x.
func BenchmarkBulkLoad(b *testing.B) {
	const n = 1_000_000
	entries := sortedEntries(n)
	for _, be := range benchEngines {
		if be.name == storage.KindHash {
			continue
		}
		for _, mode := range loadModes {
			b.Run(be.name+"/"+mode, func(b *testing.B) {
				for range b.N {
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					var peak uint64
					stop := make(chan struct{})
					var wg sync.WaitGroup
					wg.Go(func() {
						t := time.NewTicker(time.Millisecond)
						defer t.Stop()
						for {
							peak = max(peak, heapObjects())
							select {
							case <-stop:
								return
							case <-t.C:
							}
						}
					})
					start := time.Now()
					e := be.new(b)
					fill(b, e, mode, entries)
					took := time.Since(start)
					close(stop)
					wg.Wait()
					runtime.GC()
					runtime.ReadMemStats(&after)
					held := int64(after.HeapAlloc) - int64(before.HeapAlloc) + storage.ArenaOffHeapBytes(e)
					b.ReportMetric(float64(took.Milliseconds()), "load-ms")
					b.ReportMetric(float64(held)/n, "heldB/entry")
					b.ReportMetric(float64(int64(peak)-int64(before.HeapAlloc))/float64(held), "peak/held")
					runtime.KeepAlive(e)
				}
			})
		}
	}
}

// BenchmarkScanAfterLoad is BenchmarkScan (100-entry pages, a callback that
// reads nothing) on an engine filled in key order by Put or by
// storage.Load, as after a restore.
func BenchmarkScanAfterLoad(b *testing.B) {
	entries := sortedEntries(benchPreload)
	keys := make([][]byte, benchPreload)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	for _, be := range benchEngines {
		if be.name == storage.KindHash {
			continue
		}
		for _, mode := range loadModes {
			b.Run(be.name+"/"+mode, func(b *testing.B) {
				e := be.new(b)
				fill(b, e, mode, entries)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					n := 0
					e.Scan(keys[(i*7919)%len(keys)], nil, false, func(storage.Entry) bool {
						n++
						return n < benchPageSize
					})
					if n == 0 {
						b.Fatal("scan from a present key returned nothing")
					}
				}
			})
		}
	}
}
