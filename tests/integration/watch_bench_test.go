package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// BenchmarkWatch_1000Watchers measures watches on one node (a real kvnode process, single-node
// cluster): 1,000 watchers, each blocked on its own key, while one client writes 1,000 puts a
// second on an open-loop schedule spread over those keys (each watcher gets about one event a
// second, and every put wakes all 1,000 waiting watches on the node). Reported:
//
//   - the node's memory per waiting watcher: the growth of its RSS, Go heap and goroutine stacks
//     from idle to 1,000 watches waiting, divided by 1,000;
//   - the put latency (sent to acknowledged) at 1,000 puts/s without watchers (the baseline) and
//     with them, p50 and p99;
//   - the delay from commit to delivery, p50 and p99: from the put's acknowledgement (the writer
//     learning the commit) to the watcher receiving the event; negative when the watcher learnt
//     it first. Also from the put being sent.
//
// Run: go test -run '^$' -bench Watch_1000 -benchtime 1x ./tests/integration/
// (WATCH_BENCH_SECONDS sets each phase's length, default 10). The watchers and writers run in
// the test process on the same machine as the node.
func BenchmarkWatch_1000Watchers(b *testing.B) {
	const (
		watchers = 1000
		rate     = 1000 // puts per second
		writers  = 32
	)
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("WATCH_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for i := 0; i < b.N; i++ {
		n := startBenchNode(b, "--max-watches", "1100", "--max-conns", "2048")
		key := func(i int) []byte { return fmt.Appendf(nil, "wb/%04d", i%watchers) }

		// Baseline: the same load with no watcher.
		base := runPutLoad(b, n.thriftAddr, rate, secs, writers, key, nil)
		idle := scrapeMetrics(b, n.adminAddr)

		// 1,000 watchers, each waiting on its own key.
		ctx, cancel := context.WithCancel(context.Background())
		var (
			delivered []atomic.Int64 // per put number: when a watcher received it (ns since the load's start)
			started   atomic.Int64
			origin    atomic.Pointer[time.Time]
			wg        sync.WaitGroup
		)
		total := rate * secs
		delivered = make([]atomic.Int64, total)
		for w := 0; w < watchers; w++ {
			conn, err := transport.Dial(ctx, n.thriftAddr, &transport.DialConfig{RequestTimeout: 60 * time.Second})
			if err != nil {
				b.Fatalf("watcher %d: %v", w, err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				k := key(w)
				var after int64
				first := true
				for ctx.Err() == nil {
					var resp *kv.WatchResponse
					_, err := conn.Call(ctx, func(ctx context.Context, c *kv.KVClient) (err error) {
						resp, err = c.Watch(ctx, &kv.WatchRequest{Key: k, AfterIndex: after, TimeoutMs: new(int32(30000)), Consistency: kv.ConsistencyPtr(kv.Consistency_STALE)})
						return err
					})
					if first {
						started.Add(1)
						first = false
					}
					if err != nil {
						return
					}
					now := time.Now()
					for _, e := range resp.Events {
						if o := origin.Load(); o != nil && e.Entry != nil {
							if id, err := strconv.Atoi(string(e.Entry.Value)); err == nil && id < total {
								delivered[id].Store(int64(now.Sub(*o)))
							}
						}
					}
					after = resp.ResumeIndex
				}
			}()
		}
		// Every watcher has made its first call (which answers at once with the key's
		// history, empty or not) and is waiting in its second.
		testutil.WaitFor(b, 60*time.Second, "every watcher's first answer", func() bool { return started.Load() == watchers })
		var waiting metrics
		testutil.Eventually(b, 30*time.Second, "1,000 watches waiting on the node", func() error {
			waiting = scrapeMetrics(b, n.adminAddr)
			if waiting.watching < watchers {
				return fmt.Errorf("%.0f waiting", waiting.watching)
			}
			return nil
		})
		with := runPutLoad(b, n.thriftAddr, rate, secs, writers, key, &origin)
		cancel()
		wg.Wait()

		// Delivery delays of the puts acknowledged after the first second (warm-up).
		var fromAck, fromSend []time.Duration
		missing := 0
		for id := rate; id < total; id++ {
			if with.acked[id] == 0 {
				continue
			}
			d := delivered[id].Load()
			if d == 0 {
				missing++
				continue
			}
			fromAck = append(fromAck, time.Duration(d-with.acked[id]))
			fromSend = append(fromSend, time.Duration(d-with.sent[id]))
		}
		if missing > 0 {
			b.Errorf("%d acknowledged puts never reached their watcher", missing)
		}
		perWatcher := func(a, z float64) float64 { return (z - a) / watchers }
		b.ReportMetric(perWatcher(idle.rss, waiting.rss), "rss-B/watcher")
		b.ReportMetric(perWatcher(idle.heap, waiting.heap), "heap-B/watcher")
		b.ReportMetric(perWatcher(idle.stack, waiting.stack), "stack-B/watcher")
		b.ReportMetric(float64(quantile(base.latency(), 50).Microseconds()), "base-put-p50-µs")
		b.ReportMetric(float64(quantile(base.latency(), 99).Microseconds()), "base-put-p99-µs")
		b.ReportMetric(float64(quantile(with.latency(), 50).Microseconds()), "put-p50-µs")
		b.ReportMetric(float64(quantile(with.latency(), 99).Microseconds()), "put-p99-µs")
		b.ReportMetric(float64(quantile(fromAck, 50).Microseconds()), "ack-to-event-p50-µs")
		b.ReportMetric(float64(quantile(fromAck, 99).Microseconds()), "ack-to-event-p99-µs")
		b.ReportMetric(float64(quantile(fromSend, 50).Microseconds()), "send-to-event-p50-µs")
		b.ReportMetric(float64(quantile(fromSend, 99).Microseconds()), "send-to-event-p99-µs")
		b.ReportMetric(base.rate(), "base-puts/s")
		b.ReportMetric(with.rate(), "puts/s")
		b.Logf("node idle: rss %.1f MiB heap %.1f MiB stack %.1f MiB goroutines %.0f; with %d watches waiting: rss %.1f MiB heap %.1f MiB stack %.1f MiB goroutines %.0f",
			idle.rss/(1<<20), idle.heap/(1<<20), idle.stack/(1<<20), idle.goroutines, watchers, waiting.rss/(1<<20), waiting.heap/(1<<20), waiting.stack/(1<<20), waiting.goroutines)
		b.Logf("%d deliveries measured, %d puts without watchers, %d with", len(fromAck), len(base.latency()), len(with.latency()))
	}
}

// loadResult is one run of runPutLoad: per put number, when it was sent and acknowledged
// (ns since the start; 0: not acknowledged).
type loadResult struct {
	sent, acked []int64
	took        time.Duration
	warmup      int
}

func (r *loadResult) latency() []time.Duration {
	var out []time.Duration
	for id := r.warmup; id < len(r.sent); id++ {
		if r.acked[id] != 0 {
			out = append(out, time.Duration(r.acked[id]-r.sent[id]))
		}
	}
	return out
}

func (r *loadResult) rate() float64 {
	n := 0
	for _, a := range r.acked {
		if a != 0 {
			n++
		}
	}
	return float64(n) / r.took.Seconds()
}

// runPutLoad sends rate puts a second for secs seconds on an open-loop schedule (put i is due at
// i/rate s), from writers connections; put i writes key(i) = i. origin, when given, is set to the
// load's start before the first put.
func runPutLoad(b *testing.B, addr string, rate, secs, writers int, key func(int) []byte, origin *atomic.Pointer[time.Time]) *loadResult {
	b.Helper()
	total := rate * secs
	r := &loadResult{sent: make([]int64, total), acked: make([]int64, total), warmup: rate}
	start := time.Now().Add(100 * time.Millisecond)
	if origin != nil {
		origin.Store(&start)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < writers; w++ {
		conn, err := transport.Dial(context.Background(), addr, nil)
		if err != nil {
			b.Fatalf("writer: %v", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			for id := w; id < total; id += writers {
				due := start.Add(time.Duration(id) * time.Second / time.Duration(rate))
				if d := time.Until(due); d > 0 {
					time.Sleep(d) // the open-loop schedule
				}
				r.sent[id] = int64(time.Since(start))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := conn.Call(ctx, func(ctx context.Context, c *kv.KVClient) error {
					_, err := c.Put(ctx, &kv.PutRequest{Key: key(id), Value: []byte(strconv.Itoa(id))})
					return err
				})
				cancel()
				if err != nil {
					failed.Add(1)
					continue
				}
				r.acked[id] = int64(time.Since(start))
			}
		}()
	}
	wg.Wait()
	r.took = time.Since(start)
	if f := failed.Load(); f > 0 {
		b.Errorf("%d puts failed", f)
	}
	return r
}

func quantile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// metrics are the figures read from a node's /metrics.
type metrics struct {
	rss, heap, stack, goroutines float64
	watching                     float64
}

func scrapeMetrics(b *testing.B, adminAddr string) metrics {
	b.Helper()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	var m metrics
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.rss = v
		case "go_memstats_heap_inuse_bytes":
			m.heap = v
		case "go_memstats_stack_inuse_bytes":
			m.stack = v
		case "go_goroutines":
			m.goroutines = v
		case "cubekv_watches_waiting":
			m.watching = v
		}
	}
	return m
}

// benchNode is a kvnode process started for a benchmark.
type benchNode struct {
	thriftAddr, adminAddr string
}

// startBenchNode starts a single-node cluster and waits until it is ready; it is killed when the
// benchmark ends.
func startBenchNode(b *testing.B, extra ...string) *benchNode {
	b.Helper()
	dir := b.TempDir()
	n := &benchNode{thriftAddr: testutil.FreeAddr(b), adminAddr: testutil.FreeAddr(b)}
	args := append([]string{
		"--id", "n1", "--data-dir", filepath.Join(dir, "data"),
		"--thrift-addr", n.thriftAddr, "--raft-addr", testutil.FreeAddr(b),
		"--admin-addr", n.adminAddr, "--gossip-addr", "",
		"--log-level", "warn",
	}, extra...)
	logf, err := os.Create(filepath.Join(dir, "kvnode.log"))
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(kvnodeBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	testutil.Eventually(b, 30*time.Second, "kvnode ready", func() error {
		resp, err := http.Get("http://" + n.adminAddr + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	return n
}
