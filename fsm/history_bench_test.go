package fsm

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/thrift/kv"
)

// BenchmarkHistoryHeap measures what the change history costs in Go heap:
// 100,000 puts of 16-byte keys and 10-byte values applied with a history
// that keeps them all, against the same puts with a history of one change.
// Reported: heap bytes per change kept, and heap bytes per byte the
// history counts against --watch-history-bytes.
func BenchmarkHistoryHeap(b *testing.B) {
	const n = 100_000
	logs := make([]*raft.Log, n)
	for i := range logs {
		data, err := EncodeCommand(&kv.Command{Op: kv.CommandOp_PUT, Key: fmt.Appendf(nil, "key-%011d", i%1000), Value: fmt.Appendf(nil, "value-%04d", i%10000)})
		if err != nil {
			b.Fatal(err)
		}
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data}
	}
	heapAfter := func(historyBytes int64) (uint64, *FSM) {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		f, err := New(&Config{HistoryBytes: historyBytes})
		if err != nil {
			b.Fatal(err)
		}
		f.ApplyBatch(logs)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		return after.HeapAlloc - before.HeapAlloc, f
	}
	for i := 0; i < b.N; i++ {
		small, f1 := heapAfter(1)
		big, f2 := heapAfter(1 << 30)
		if floor, _ := f2.HistoryRange(); floor != 0 {
			b.Fatalf("history evicted to %d", floor)
		}
		b.ReportMetric(float64(big-small)/n, "heap-B/change")
		b.ReportMetric(float64(big-small)/float64(f2.HistoryBytes()), "heap-B/counted-B")
		runtime.KeepAlive(f1)
		runtime.KeepAlive(f2)
	}
}
