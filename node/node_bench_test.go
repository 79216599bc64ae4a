package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// mustBenchCluster starts n in-memory nodes bootstrapped as one cluster, as mustCluster does but
// logging nowhere, and returns the ready leader. The nodes close when the benchmark ends.
func mustBenchCluster(b *testing.B, n int) (*cluster, *Node) {
	b.Helper()
	c := mustClusterWith(b, n, func(_ int, cfg *Config) { cfg.Logger = nil })
	return c, c.mustLeader(b)
}

// benchNodeKey returns key i of a 100,000-key space, 16 bytes.
func benchNodeKey(i int) []byte { return fmt.Appendf(nil, "%016d", i%100_000) }

// BenchmarkNode_ApplyParallel writes 100-byte values to random keys from GOMAXPROCS*16 goroutines
// through the leader of a 3-node in-memory cluster (the proposer coalesces them), and reports ops/s.
func BenchmarkNode_ApplyParallel(b *testing.B) {
	_, leader := mustBenchCluster(b, 3)
	value := make([]byte, 100)
	var seed atomic.Uint64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 1))
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := leader.Apply(ctx, &kv.Command{Op: kv.CommandOp_PUT, Key: benchNodeKey(rng.IntN(100_000)), Value: value})
			cancel()
			if err != nil {
				b.Errorf("apply: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkNode_LinearizableReadParallel reads random keys of 2,000 (half of them present) with
// LINEARIZABLE consistency from GOMAXPROCS*16 goroutines on the leader of a 3-node in-memory
// cluster, so concurrent readers share read-index rounds, and reports ops/s.
func BenchmarkNode_LinearizableReadParallel(b *testing.B) {
	_, leader := mustBenchCluster(b, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	value := make([]byte, 100)
	for i := 0; i < 2000; i += 2 {
		if _, err := leader.Apply(ctx, &kv.Command{Op: kv.CommandOp_PUT, Key: benchNodeKey(i), Value: value}); err != nil {
			b.Fatalf("preload: %v", err)
		}
	}
	cancel()
	var seed atomic.Uint64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 2))
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _, _, err := leader.Get(ctx, benchNodeKey(rng.IntN(2000)), kv.Consistency_LINEARIZABLE)
			cancel()
			if err != nil {
				b.Errorf("get: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
