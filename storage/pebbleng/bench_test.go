package pebbleng_test

import (
	"encoding/binary"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cubekv/cubekv/storage"
)

// Benchmark shapes as in storage's benchmarks: 16-byte keys in random
// order, 100-byte values, 100,000 keys preloaded, 100-entry scan pages.
const (
	benchPreload  = 100_000
	benchPageSize = 100
	benchBatch    = 64
)

func benchKey(i int) []byte {
	k := make([]byte, 16)
	x := uint64(i)*0x9E3779B97F4A7C15 + 1
	x ^= x >> 31
	binary.BigEndian.PutUint64(k, x)
	binary.BigEndian.PutUint64(k[8:], uint64(i))
	return k
}

func benchValue(i int) []byte {
	v := make([]byte, 100)
	for j := range v {
		v[j] = byte(i + j)
	}
	return v
}

// benchEngine is an engine and how to commit it (nil for an in-memory
// engine, which has nothing to commit).
type benchEngine struct {
	e      storage.Engine
	commit func(idx uint64) error
}

// benchEngines lists the engines compared: the arena (the default, the
// baseline) and pebble on disk.
var benchEngines = []struct {
	name string
	new  func(testing.TB) benchEngine
}{
	{name: "arena", new: func(tb testing.TB) benchEngine {
		e, err := storage.New(storage.KindArena)
		if err != nil {
			tb.Fatal(err)
		}
		return benchEngine{e: e}
	}},
	{name: "pebble", new: func(tb testing.TB) benchEngine {
		e := mustOpen(tb, vfs.Default, tb.TempDir())
		tb.Cleanup(func() { _ = e.Close() })
		return benchEngine{e: e, commit: e.Commit}
	}},
}

func preload(b *testing.B, be benchEngine) [][]byte {
	b.Helper()
	keys := make([][]byte, benchPreload)
	for i := range keys {
		keys[i] = benchKey(i)
		be.e.Put(uint64(i+1), keys[i], benchValue(i))
		if be.commit != nil && (i%1000 == 999 || i == len(keys)-1) {
			if err := be.commit(uint64(i + 1)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if be.e.Len() != benchPreload {
		b.Fatalf("preloaded %d keys, Len() = %d", benchPreload, be.e.Len())
	}
	return keys
}

// BenchmarkGet reads random present keys.
func BenchmarkGet(b *testing.B) {
	for _, bn := range benchEngines {
		b.Run(bn.name, func(b *testing.B) {
			be := bn.new(b)
			keys := preload(b, be)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, ok := be.e.Get(keys[(i*7919)%len(keys)]); !ok {
					b.Fatal("preloaded key not found")
				}
			}
		})
	}
}

// BenchmarkPutCommit overwrites random present keys, committing every 64
// puts (as the FSM commits a batch of Raft entries); ns/op is per put.
func BenchmarkPutCommit(b *testing.B) {
	for _, bn := range benchEngines {
		b.Run(bn.name, func(b *testing.B) {
			be := bn.new(b)
			keys := preload(b, be)
			values := make([][]byte, 256)
			for i := range values {
				values[i] = benchValue(i)
			}
			idx := uint64(len(keys))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				idx++
				be.e.Put(idx, keys[(i*7919)%len(keys)], values[i%len(values)])
				if be.commit != nil && i%benchBatch == benchBatch-1 {
					if err := be.commit(idx); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkScan reads 100-entry pages from random places.
func BenchmarkScan(b *testing.B) {
	for _, bn := range benchEngines {
		b.Run(bn.name, func(b *testing.B) {
			be := bn.new(b)
			keys := preload(b, be)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				n := 0
				be.e.Scan(keys[(i*7919)%len(keys)], nil, false, func(storage.Entry) bool {
					n++
					return n < benchPageSize
				})
			}
		})
	}
}
