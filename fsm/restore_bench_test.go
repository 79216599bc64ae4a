package fsm

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/storage"
)

// fileSink is a raft.SnapshotSink writing to a file.
type fileSink struct{ *os.File }

func (fileSink) ID() string      { return "bench" }
func (s fileSink) Cancel() error { return s.File.Close() }

// heapObjectBytes returns the bytes of heap objects, live or not yet swept.
func heapObjectBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkRestorePeak loads 1,000,000 entries (16-byte keys, 100-byte
// values) into an FSM, persists a snapshot to a file and restores it into the
// same FSM, as a follower installing a snapshot does: the old state serves
// until the new engine is complete. It reports the heap the state takes after
// GC (state-MiB), the peak of heap objects during the restore, sampled
// every millisecond, as a multiple of it (peak/state), the heap after the
// restore and a GC (restored-MiB) and the time Restore took (restore-ms).
// The bound on peak/state is 2: the old state plus the engine being built.
// The GC runs at the GOGC of the environment (kvnode's default is in
// cmd/kvnode).
func BenchmarkRestorePeak(b *testing.B) {
	const n = 1_000_000
	for _, eng := range []string{storage.KindBTree, storage.KindArena} {
		b.Run(eng, func(b *testing.B) {
			for range b.N {
				f := mustNew(b, eng)
				value := make([]byte, 100)
				for i := range n {
					k := make([]byte, 16)
					binary.BigEndian.PutUint64(k, uint64(i)*0x9E3779B97F4A7C15)
					binary.BigEndian.PutUint64(k[8:], uint64(i))
					f.engine.Put(uint64(i+1), k, value)
				}
				f.applied.Store(n)
				path := filepath.Join(b.TempDir(), "snap")
				file, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				snap, err := f.Snapshot()
				if err != nil {
					b.Fatal(err)
				}
				if err := snap.Persist(fileSink{file}); err != nil {
					b.Fatal(err)
				}
				snap.Release()
				runtime.GC()
				runtime.GC()
				state := heapObjectBytes()

				var peak uint64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					t := time.NewTicker(time.Millisecond)
					defer t.Stop()
					for {
						peak = max(peak, heapObjectBytes())
						select {
						case <-stop:
							return
						case <-t.C:
						}
					}
				})
				in, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := f.Restore(in); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				close(stop)
				wg.Wait()
				if f.Len() != n {
					b.Fatalf("restored %d entries, want %d", f.Len(), n)
				}
				runtime.GC()
				runtime.GC()
				b.ReportMetric(float64(state)/(1<<20), "state-MiB")
				b.ReportMetric(float64(heapObjectBytes())/(1<<20), "restored-MiB")
				b.ReportMetric(float64(peak)/float64(state), "peak/state")
				b.ReportMetric(float64(took.Milliseconds()), "restore-ms")
				runtime.KeepAlive(f)
			}
		})
	}
}
