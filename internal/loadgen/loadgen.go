// Package loadgen drives benchmarks: workers, the open-loop schedule,
// latency histograms, progress lines and the report. Nothing here knows
// about cubekv: kvctl bench and bench/etcdload (which measures etcd) both
// use it, so both systems are measured and reported the same way.
package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds, from 1 µs to 5 minutes, with three
// significant digits.
const (
	histMinMicros = 1
	histMaxMicros = int64(5 * time.Minute / time.Microsecond)
	histSigFigs   = 3
	// histShards is the most histograms the workers record into; a worker uses shard w % histShards.
	histShards = 16
)

// Config says how a run is driven, whatever one operation does.
type Config struct {
	// Workers is the number of concurrent workers; at least 1.
	Workers int
	// Duration ends the run when it has passed; 0 means no time limit (Ops must be set).
	Duration time.Duration
	// Ops ends the run once this many operations have started; 0 means no count limit.
	Ops int64
	// Rate, in operations per second over all workers, makes the run open-loop: operation k of worker
	// w is due at a fixed time (schedule.at) and its latency is measured from then, so a slow answer
	// delays the operations behind it and their latencies include the wait (no coordinated
	// omission). 0 means closed-loop: each worker starts its next operation when the last one ends.
	Rate float64
	// Progress is the interval of progress lines; 0 means none.
	Progress time.Duration
	// Label starts every progress line.
	Label string
}

// Op runs one operation for worker w. miss reports a well-formed negative answer (key not found,
// compare failed), which counts as an operation and in the latencies.
type Op func(ctx context.Context, w int) (miss bool, err error)

// schedule is the open-loop timetable: every worker issues one operation per interval, the workers'
// phases spread evenly over one interval.
type schedule struct {
	start    time.Time
	workers  int
	interval time.Duration // between two operations of one worker
}

// newSchedule returns the timetable for rate operations per second over workers, starting at start.
func newSchedule(start time.Time, workers int, rate float64) schedule {
	return schedule{
		start:    start,
		workers:  workers,
		interval: time.Duration(float64(workers) / rate * float64(time.Second)),
	}
}

// at returns when operation k (from 0) of worker w is due.
func (s schedule) at(w int, k int64) time.Time {
	phase := time.Duration(int64(s.interval) * int64(w) / int64(s.workers))
	return s.start.Add(phase + time.Duration(k)*s.interval)
}

// newLatencyHist returns an empty histogram of latencies in microseconds.
func newLatencyHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histSigFigs)
}

// recordShard is where some workers record their outcomes.
type recordShard struct {
	mu       sync.Mutex // guards every field
	total    *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram // since the last progress line
	errors   int64
	misses   int64
	ivErrors int64
	firstErr error
}

func (s *recordShard) record(d time.Duration, miss bool, err error) {
	us := max(d.Microseconds(), histMinMicros)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.errors++
		s.ivErrors++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	if miss {
		s.misses++
	}
	// A value above the highest trackable is recorded as the highest.
	_ = s.total.RecordValue(min(us, histMaxMicros))
	_ = s.interval.RecordValue(min(us, histMaxMicros))
}

// Result is what a run measured. Latencies are of successful operations (misses included);
// failed ones are only counted.
type Result struct {
	Ops      int64 // successful operations, misses included
	Errors   int64
	Misses   int64
	Elapsed  time.Duration
	Hist     *hdrhistogram.Histogram
	FirstErr error
}

// Run runs op on cfg.Workers workers until cfg.Duration passes, cfg.Ops operations have
// started, or ctx ends, writing a progress line to progress every cfg.Progress. An operation that
// fails because ctx ended is not counted.
func Run(ctx context.Context, cfg Config, op Op, progress io.Writer) *Result {
	nShards := min(cfg.Workers, histShards)
	shards := make([]*recordShard, nShards)
	for i := range shards {
		shards[i] = &recordShard{total: newLatencyHist(), interval: newLatencyHist()}
	}
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	var sched schedule
	if cfg.Rate > 0 {
		sched = newSchedule(start, cfg.Workers, cfg.Rate)
	}
	var started atomic.Int64
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Go(func() {
			runWorker(ctx, cfg, w, op, shards[w%nShards], sched, deadline, &started)
		})
	}

	done := make(chan struct{})
	var pwg sync.WaitGroup
	if cfg.Progress > 0 && progress != nil {
		pwg.Go(func() { reportProgress(cfg, shards, start, progress, done) })
	}
	wg.Wait()
	close(done)
	pwg.Wait()

	res := &Result{Elapsed: time.Since(start), Hist: newLatencyHist()}
	for _, s := range shards {
		s.mu.Lock()
		res.Hist.Merge(s.total)
		res.Errors += s.errors
		res.Misses += s.misses
		if res.FirstErr == nil {
			res.FirstErr = s.firstErr
		}
		s.mu.Unlock()
	}
	res.Ops = res.Hist.TotalCount()
	return res
}

// runWorker is worker w's loop.
func runWorker(ctx context.Context, cfg Config, w int, op Op, shard *recordShard, sched schedule,
	deadline time.Time, started *atomic.Int64,
) {
	var timer *time.Timer
	for k := int64(0); ctx.Err() == nil; k++ {
		if cfg.Ops > 0 && started.Add(1) > cfg.Ops {
			return
		}
		begin := time.Now()
		if cfg.Rate > 0 {
			due := sched.at(w, k)
			if !deadline.IsZero() && !due.Before(deadline) {
				return
			}
			if wait := due.Sub(begin); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-ctx.Done():
					timer.Stop()
					return
				}
			}
			begin = due
		} else if !deadline.IsZero() && !begin.Before(deadline) {
			return
		}
		miss, err := op(ctx, w)
		if err != nil && ctx.Err() != nil {
			return
		}
		shard.record(time.Since(begin), miss, err)
	}
}

// reportProgress writes one line per cfg.Progress until done closes: the throughput and latencies of
// the last interval, and the totals.
func reportProgress(cfg Config, shards []*recordShard, start time.Time, w io.Writer, done <-chan struct{}) {
	t := time.NewTicker(cfg.Progress)
	defer t.Stop()
	last := start
	iv := newLatencyHist()
	var total, errs int64
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			iv.Reset()
			var ivErrs int64
			for _, s := range shards {
				s.mu.Lock()
				iv.Merge(s.interval)
				s.interval.Reset()
				ivErrs += s.ivErrors
				s.ivErrors = 0
				s.mu.Unlock()
			}
			n := iv.TotalCount()
			total += n
			errs += ivErrs
			secs := now.Sub(last).Seconds()
			last = now
			fmt.Fprintf(w, "%s %5.0fs  %9.0f ops/s  p50 %-9s p99 %-9s max %-9s total %d errors %d\n",
				cfg.Label, now.Sub(start).Seconds(), float64(n)/secs,
				microsString(float64(iv.ValueAtQuantile(50))), microsString(float64(iv.ValueAtQuantile(99))),
				microsString(float64(iv.Max())), total, errs)
		}
	}
}

// Latency is a latency summary in microseconds.
type Latency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Report is the outcome of one run as printed (-o json prints it as is). bench/etcdload prints
// the same document, so scripts can compare the two systems.
type Report struct {
	System      string  `json:"system"`
	Workload    string  `json:"workload"`
	Consistency string  `json:"consistency,omitempty"`
	Clients     int     `json:"clients"`
	Conns       int     `json:"conns"`
	Keys        int     `json:"keys"`
	KeySize     int     `json:"key_size"`
	ValueSize   int     `json:"value_size"`
	Rate        float64 `json:"rate,omitempty"`
	Seconds     float64 `json:"seconds"`
	Ops         int64   `json:"ops"`
	Errors      int64   `json:"errors"`
	Misses      int64   `json:"misses"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	LatencyUs   Latency `json:"latency_us"`
	FirstError  string  `json:"first_error,omitempty"`
}

// fill sets the measured fields of r from res.
func (r *Report) Fill(res *Result) {
	r.Seconds = res.Elapsed.Seconds()
	r.Ops = res.Ops
	r.Errors = res.Errors
	r.Misses = res.Misses
	if r.Seconds > 0 {
		r.OpsPerSec = float64(res.Ops) / r.Seconds
	}
	h := res.Hist
	r.LatencyUs = Latency{
		Mean: h.Mean(),
		P50:  float64(h.ValueAtQuantile(50)),
		P90:  float64(h.ValueAtQuantile(90)),
		P99:  float64(h.ValueAtQuantile(99)),
		P999: float64(h.ValueAtQuantile(99.9)),
		Max:  float64(h.Max()),
	}
	if res.FirstErr != nil {
		r.FirstError = res.FirstErr.Error()
	}
}

// microsString formats a number of microseconds for a table: 873µs, 1.24ms, 2.50s.
func microsString(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.2fs", us/1e6)
	}
}

// WriteReport prints r as a table (format "simple") or as JSON (format "json").
func WriteReport(w io.Writer, format string, r *Report) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SYSTEM\tWORKLOAD\tCLIENTS\tSECONDS\tOPS\tERRORS\tMISSES\tOPS/S\tP50\tP90\tP99\tP99.9\tMAX")
	l := r.LatencyUs
	fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%d\t%d\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\n", r.System, r.Workload, r.Clients,
		r.Seconds, r.Ops, r.Errors, r.Misses, r.OpsPerSec, microsString(l.P50), microsString(l.P90),
		microsString(l.P99), microsString(l.P999), microsString(l.Max))
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.FirstError != "" {
		_, err := fmt.Fprintf(w, "first error: %s\n", r.FirstError)
		return err
	}
	return nil
}

// Key returns key i of a key space: i in decimal, zero-padded to size bytes.
// Every loader uses it, so the systems compared see the same keys.
func Key(i, size int) []byte {
	b := make([]byte, 0, size)
	s := strconv.Itoa(i)
	for range size - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// Value returns size bytes of printable text drawn from rng.
func Value(rng *rand.Rand, size int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	v := make([]byte, size)
	for i := range v {
		v[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return v
}
