package storage_test

import (
	"encoding/binary"
	"runtime"
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

// mustPreload returns an engine of kind holding keys 0..n-1, and the keys.
func mustPreload(b *testing.B, kind string, n int) (storage.Engine, [][]byte) {
	b.Helper()
	e := mustNew(b, kind)
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
	for _, kind := range []string{storage.KindBTree, storage.KindHash} {
		b.Run(kind, func(b *testing.B) {
			e, keys := mustPreload(b, kind, benchPreload)
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
// new 100-byte values (the engine copies key and value into one allocation).
func BenchmarkPut(b *testing.B) {
	for _, kind := range []string{storage.KindBTree, storage.KindHash} {
		b.Run(kind, func(b *testing.B) {
			e, keys := mustPreload(b, kind, benchPreload)
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
	for _, kind := range []string{storage.KindBTree, storage.KindHash} {
		b.Run(kind, func(b *testing.B) {
			e, keys := mustPreload(b, kind, benchPreload)
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

// BenchmarkHeapPerEntry loads 1,000,000 entries (16-byte keys, 100-byte
// values) and reports the live heap they take per entry, after GC. "random"
// inserts in random key order (the write path), "sorted" in key order (a
// restore from a snapshot).
func BenchmarkHeapPerEntry(b *testing.B) {
	const n = 1_000_000
	cases := []struct {
		name   string
		kind   string
		sorted bool
	}{
		{name: "btree/random", kind: storage.KindBTree},
		{name: "btree/sorted", kind: storage.KindBTree, sorted: true},
		{name: "hash/random", kind: storage.KindHash},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				e := mustNew(b, c.kind)
				for i := range n {
					k := benchKey(i)
					if c.sorted {
						k = make([]byte, benchKeyLen)
						binary.BigEndian.PutUint64(k[8:], uint64(i))
					}
					e.Put(uint64(i+1), k, benchValue(i))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if e.Len() != n {
					b.Fatalf("loaded %d keys, Len() = %d", n, e.Len())
				}
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "heapB/entry")
				b.ReportMetric(float64(e.Bytes())/n, "dataB/entry")
				runtime.KeepAlive(e)
			}
		})
	}
}
