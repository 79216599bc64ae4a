package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSchedule_SpreadsWorkersOverOneInterval(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := newSchedule(t0, 4, 400) // each worker: 100 ops/s, one every 10ms
	cases := []struct {
		w    int
		k    int64
		want time.Duration
	}{
		{0, 0, 0},
		{1, 0, 2500 * time.Microsecond},
		{3, 0, 7500 * time.Microsecond},
		{0, 1, 10 * time.Millisecond},
		{3, 2, 27500 * time.Microsecond},
	}
	for _, c := range cases {
		if got := s.at(c.w, c.k).Sub(t0); got != c.want {
			t.Errorf("at(%d, %d) = t0+%v, want t0+%v", c.w, c.k, got, c.want)
		}
	}
}

// slowFirstOp returns an operation whose first call takes d and every later call returns at once.
func slowFirstOp(d time.Duration) Op {
	var calls atomic.Int64
	return func(ctx context.Context, _ int) (bool, error) {
		if calls.Add(1) == 1 {
			time.Sleep(d)
		}
		return false, nil
	}
}

func TestRunBenchLoop_OpenLoopMeasuresFromScheduledStart(t *testing.T) {
	// One worker, one op every 10ms; the first op stalls 60ms. Ops 2..5 were due at 10..40ms and
	// start only at ~60ms, so each one's latency includes its wait: at least 20ms for all five.
	res := Run(context.Background(), Config{Workers: 1, Ops: 5, Rate: 100}, slowFirstOp(60*time.Millisecond), nil)
	if res.Ops != 5 || res.Errors != 0 {
		t.Fatalf("ops %d errors %d, want 5 and 0", res.Ops, res.Errors)
	}
	if min := res.Hist.Min(); min < 19_000 {
		t.Errorf("smallest latency %dµs: the ops delayed by the stall must count their wait (want >= 19ms)", min)
	}

	// Closed loop: the same stall delays only its own op.
	res = Run(context.Background(), Config{Workers: 1, Ops: 5}, slowFirstOp(60*time.Millisecond), nil)
	if res.Ops != 5 {
		t.Fatalf("closed loop: ops %d, want 5", res.Ops)
	}
	if got := res.Hist.Max(); got < 59_000 {
		t.Errorf("closed loop: largest latency %dµs, want >= 59ms", got)
	}
	if got := res.Hist.ValueAtQuantile(50); got > 10_000 {
		t.Errorf("closed loop: median latency %dµs, want the undelayed ops fast (< 10ms)", got)
	}
}

func TestRunBenchLoop_OpenLoopKeepsTheRate(t *testing.T) {
	// 4 workers at 200 ops/s over 500ms: about 100 ops, however fast the op is.
	var calls atomic.Int64
	op := func(context.Context, int) (bool, error) { calls.Add(1); return false, nil }
	res := Run(context.Background(), Config{Workers: 4, Duration: 500 * time.Millisecond, Rate: 200}, op, nil)
	if res.Ops != 100 || calls.Load() != 100 {
		t.Fatalf("ops %d (calls %d), want exactly the 100 scheduled before the end", res.Ops, calls.Load())
	}
}

func TestRunBenchLoop_StopsAtOpsAndCountsOutcomes(t *testing.T) {
	var calls atomic.Int64
	errBoom := errors.New("boom")
	op := func(context.Context, int) (bool, error) {
		n := calls.Add(1)
		switch {
		case n%10 == 0:
			return false, errBoom
		case n%4 == 0:
			return true, nil
		}
		return false, nil
	}
	res := Run(context.Background(), Config{Workers: 8, Ops: 1000}, op, nil)
	if calls.Load() != 1000 {
		t.Fatalf("op called %d times, want 1000", calls.Load())
	}
	// Of 1..1000: 100 multiples of 10 fail; multiples of 4 that are not multiples of 20 miss (250-50).
	if res.Errors != 100 || res.Ops != 900 || res.Misses != 200 {
		t.Fatalf("errors %d ops %d misses %d, want 100, 900, 200", res.Errors, res.Ops, res.Misses)
	}
	if !errors.Is(res.FirstErr, errBoom) {
		t.Fatalf("first error %v, want boom", res.FirstErr)
	}
}

func TestRunBenchLoop_StopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	op := func(ctx context.Context, _ int) (bool, error) {
		if calls.Add(1) == 50 {
			cancel()
		}
		return false, ctx.Err()
	}
	done := make(chan *Result, 1)
	go func() { done <- Run(ctx, Config{Workers: 2, Duration: time.Hour}, op, nil) }()
	select {
	case res := <-done:
		if res.Errors != 0 {
			t.Fatalf("%d errors: operations failing because the run was cancelled must not count", res.Errors)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop after its context was cancelled")
	}
}

func TestRunBenchLoop_WritesProgress(t *testing.T) {
	var buf syncBuffer
	op := func(context.Context, int) (bool, error) { time.Sleep(time.Millisecond); return false, nil }
	Run(context.Background(), Config{Workers: 2, Duration: 700 * time.Millisecond, Progress: 200 * time.Millisecond, Label: "put"}, op, &buf)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("progress %q: want at least 2 lines in 700ms at 200ms", buf.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "put ") || !strings.Contains(l, "ops/s") || !strings.Contains(l, "p99") {
			t.Errorf("progress line %q", l)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestBenchReport_PercentilesAndFormats(t *testing.T) {
	h := newLatencyHist()
	for v := int64(1); v <= 1000; v++ {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	r := &Report{System: "cubekv", Workload: "put", Clients: 4}
	r.Fill(&Result{Ops: 1000, Errors: 2, Misses: 3, Elapsed: 2 * time.Second, Hist: h, FirstErr: errors.New("x")})
	l := r.LatencyUs
	if r.OpsPerSec != 500 || l.P50 != 500 || l.P90 != 900 || l.P99 != 990 || l.P999 != 999 || l.Max != 1000 {
		t.Fatalf("report %+v", r)
	}
	var out bytes.Buffer
	if err := WriteReport(&out, "simple", r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OPS/S", "P99.9", "cubekv", "500µs", "990µs", "1.00ms", "first error: x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table %q lacks %q", out.String(), want)
		}
	}
	out.Reset()
	if err := WriteReport(&out, "json", r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("json %q: %v", out.String(), err)
	}
	if back.LatencyUs != r.LatencyUs || back.Ops != 1000 || back.Errors != 2 || back.Misses != 3 {
		t.Fatalf("json round trip %+v, want %+v", back, r)
	}
}

func TestMicrosString(t *testing.T) {
	for in, want := range map[float64]string{873: "873µs", 1240: "1.24ms", 2_500_000: "2.50s"} {
		if got := microsString(in); got != want {
			t.Errorf("microsString(%v) = %q, want %q", in, got, want)
		}
	}
}
