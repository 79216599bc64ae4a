package storage_test

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/cubekv/cubekv/storage"
)

// Benchmark shapes: 16-byte keys and 100-byte values, as on a small node.
const (
	benchKeyLen   = 16
	benchValueLen = 100
	benchPreload  = 100_000
	benchPageSize = 100
)

// benchKey returns the i'th benchmark key: 16 bytes whose order is unrelated
// to i, so loading keys 0..n-1 inserts in random order.
func benchKey(i int) []byte {
	k := make([]byte, benchKeyLen)
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	x ^= x >> 31
	binary.BigEndian.PutUint64(k, x)
	binary.BigEndian.PutUint64(k[8:], uint64(i))
	return k
}

// benchValue returns a new 100-byte value derived from i.
func benchValue(i int) []byte {
	v := make([]byte, benchValueLen)
	for j := range v {
		v[j] = byte(i + j)
	}
	return v
}

// benchEngine is an engine the benchmarks compare: every kind, and the arena
// with slabs mapped outside the Go heap.
type benchEngine struct {
	name string
	new  func(testing.TB) storage.Engine
}

// benchEngines lists the engines every benchmark runs, btree (the baseline)
// first.
var benchEngines = []benchEngine{
	{name: storage.KindBTree, new: func(tb testing.TB) storage.Engine { return mustNew(tb, storage.KindBTree) }},
	{name: storage.KindHash, new: func(tb testing.TB) storage.Engine { return mustNew(tb, storage.KindHash) }},
	{name: storage.KindArena, new: func(tb testing.TB) storage.Engine { return mustNew(tb, storage.KindArena) }},
	{name: "arena-mmap", new: func(testing.TB) storage.Engine { return storage.NewArenaMmap() }},
}

// mustPreload returns an engine holding keys 0..n-1, and the keys.
func mustPreload(b *testing.B, be benchEngine, n int) (storage.Engine, [][]byte) {
	b.Helper()
	e := be.new(b)
	keys := make([][]byte, n)
	for i := range n {
		keys[i] = benchKey(i)
		e.Put(uint64(i+1), benchKey(i), benchValue(i))
	}
	if e.Len() != n {
		b.Fatalf("preloaded %d keys, Len() = %d", n, e.Len())
	}
	return e, keys
}

// BenchmarkGet reads random present keys from a preloaded engine.
func BenchmarkGet(b *testing.B) {
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) {
			e, keys := mustPreload(b, be, benchPreload)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, ok := e.Get(keys[(i*7919)%len(keys)]); !ok {
					b.Fatal("preloaded key not found")
				}
			}
		})
	}
}

// BenchmarkPut overwrites random present keys of a preloaded engine with
// new 100-byte values (the engine copies key and value).
func BenchmarkPut(b *testing.B) {
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) {
			e, keys := mustPreload(b, be, benchPreload)
			values := make([][]byte, 256)
			for i := range values {
				values[i] = benchValue(i)
			}
			idx := uint64(len(keys))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				idx++
				e.Put(idx, keys[(i*7919)%len(keys)], values[i%len(values)])
			}
		})
	}
}

// BenchmarkScan reads 100-entry pages (a start key, no end, stop after 100)
// from random places in a preloaded engine.
func BenchmarkScan(b *testing.B) {
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) {
			e, keys := mustPreload(b, be, benchPreload)
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

// BenchmarkScanRead is BenchmarkScan with a callback that reads each entry
// it is given (copies key and value into a page buffer), as the server does
// when it encodes a response: an engine that returns slices into its own
// memory pays for touching the records there, one that copies pays for it
// in Scan.
func BenchmarkScanRead(b *testing.B) {
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) {
			e, keys := mustPreload(b, be, benchPreload)
			page := make([]byte, 0, benchPageSize*(benchKeyLen+benchValueLen))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				n := 0
				page = page[:0]
				e.Scan(keys[(i*7919)%len(keys)], nil, false, func(en storage.Entry) bool {
					page = append(append(page, en.Key...), en.Value...)
					n++
					return n < benchPageSize
				})
				if len(page) == 0 {
					b.Fatal("scan from a present key returned nothing")
				}
			}
		})
	}
}

// BenchmarkHeapPerEntry loads 1,000,000 entries (16-byte keys, 100-byte
// values) and reports the memory they hold per entry after GC: the live heap
// they add plus, for arena-mmap, the slabs mapped outside the heap
// (heldB/entry), and the raw key and value bytes (dataB/entry). "random"
// inserts in random key order (the write path), "sorted" in key order (a
// restore from a snapshot).
func BenchmarkHeapPerEntry(b *testing.B) {
	const n = 1_000_000
	for _, be := range benchEngines {
		for _, sorted := range []bool{false, true} {
			name := be.name + "/random"
			if sorted {
				name = be.name + "/sorted"
			}
			b.Run(name, func(b *testing.B) {
				heldPerEntry(b, be, n, benchValueLen, sorted)
			})
		}
	}
}

// BenchmarkHeapPerEntry1KiB is BenchmarkHeapPerEntry with 1 KiB values and
// 200,000 entries in random order.
func BenchmarkHeapPerEntry1KiB(b *testing.B) {
	for _, be := range benchEngines {
		b.Run(be.name, func(b *testing.B) { heldPerEntry(b, be, 200_000, 1024, false) })
	}
}

// heldPerEntry loads n entries with values of vlen bytes, in random or
// sorted key order, and reports what they hold per entry.
func heldPerEntry(b *testing.B, be benchEngine, n, vlen int, sorted bool) {
	value := make([]byte, vlen)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		e := be.new(b)
		for i := range n {
			k := benchKey(i)
			if sorted {
				k = make([]byte, benchKeyLen)
				binary.BigEndian.PutUint64(k[8:], uint64(i))
			}
			copy(value, benchValue(i))
			e.Put(uint64(i+1), k, value)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if e.Len() != n {
			b.Fatalf("loaded %d keys, Len() = %d", n, e.Len())
		}
		held := int64(after.HeapAlloc) - int64(before.HeapAlloc) + storage.ArenaOffHeapBytes(e)
		b.ReportMetric(float64(held)/float64(n), "heldB/entry")
		b.ReportMetric(float64(e.Bytes())/float64(n), "dataB/entry")
		b.ReportMetric(float64(int64(after.HeapObjects)-int64(before.HeapObjects))/float64(n), "objects/entry")
		runtime.KeepAlive(e)
	}
}

// BenchmarkGCUnderPutLoad preloads 100,000 or 1,000,000 entries and then
// overwrites random keys, b.N puts, reporting what the garbage collector
// costs during the puts: its share of the process's CPU time (gc-cpu-%,
// from runtime/metrics) and its cycles per million puts; then, after a GC,
// the live heap objects the engine holds (the benchmark's keys share one
// allocation). Run with GOGC=50 (kvnode's default) and enough puts for
// several cycles, e.g. -benchtime=3000000x.
func BenchmarkGCUnderPutLoad(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, be := range benchEngines {
			b.Run(fmt.Sprintf("%s/%dk", be.name, n/1000), func(b *testing.B) {
				flat := make([]byte, n*benchKeyLen)
				keys := make([][]byte, n)
				for i := range keys {
					keys[i] = flat[i*benchKeyLen : (i+1)*benchKeyLen : (i+1)*benchKeyLen]
					copy(keys[i], benchKey(i))
				}
				values := make([][]byte, 256)
				for i := range values {
					values[i] = benchValue(i)
				}
				var ms0, ms1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&ms0)
				e := be.new(b)
				for i, k := range keys {
					e.Put(uint64(i+1), k, values[i%len(values)])
				}
				runtime.GC()
				cpu0 := gcCPU()
				var gc0, gc1 runtime.MemStats
				runtime.ReadMemStats(&gc0)
				idx := uint64(n)
				b.ResetTimer()
				for i := range b.N {
					idx++
					e.Put(idx, keys[(i*7919)%len(keys)], values[i%len(values)])
				}
				b.StopTimer()
				cpu1 := gcCPU()
				runtime.ReadMemStats(&gc1)
				runtime.GC()
				runtime.ReadMemStats(&ms1)
				if total := cpu1.total - cpu0.total; total > 0 {
					b.ReportMetric(100*(cpu1.gc-cpu0.gc)/total, "gc-cpu-%")
				}
				b.ReportMetric(float64(gc1.NumGC-gc0.NumGC)*1e6/float64(b.N), "gcs/Mput")
				b.ReportMetric(float64(int64(ms1.HeapObjects)-int64(ms0.HeapObjects)), "heap-objects")
				runtime.KeepAlive(e)
			})
		}
	}
}

// cpuTimes is the process's CPU time so far, in total and in the garbage
// collector, as runtime/metrics estimates them.
type cpuTimes struct{ total, gc float64 }

func gcCPU() cpuTimes {
	s := []metrics.Sample{{Name: "/cpu/classes/total:cpu-seconds"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return cpuTimes{total: s[0].Value.Float64(), gc: s[1].Value.Float64()}
}
