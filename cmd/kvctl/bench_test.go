package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
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
func slowFirstOp(d time.Duration) benchOp {
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
	res := runBenchLoop(context.Background(), benchConfig{Workers: 1, Ops: 5, Rate: 100}, slowFirstOp(60*time.Millisecond), nil)
	if res.Ops != 5 || res.Errors != 0 {
		t.Fatalf("ops %d errors %d, want 5 and 0", res.Ops, res.Errors)
	}
	if min := res.Hist.Min(); min < 19_000 {
		t.Errorf("smallest latency %dµs: the ops delayed by the stall must count their wait (want >= 19ms)", min)
	}

	// Closed loop: the same stall delays only its own op.
	res = runBenchLoop(context.Background(), benchConfig{Workers: 1, Ops: 5}, slowFirstOp(60*time.Millisecond), nil)
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
	res := runBenchLoop(context.Background(), benchConfig{Workers: 4, Duration: 500 * time.Millisecond, Rate: 200}, op, nil)
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
	res := runBenchLoop(context.Background(), benchConfig{Workers: 8, Ops: 1000}, op, nil)
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
	done := make(chan *benchResult, 1)
	go func() { done <- runBenchLoop(ctx, benchConfig{Workers: 2, Duration: time.Hour}, op, nil) }()
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
	runBenchLoop(context.Background(), benchConfig{Workers: 2, Duration: 700 * time.Millisecond, Progress: 200 * time.Millisecond, Label: "put"}, op, &buf)
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
	r := &benchReport{System: "cubekv", Workload: "put", Clients: 4}
	r.fill(&benchResult{Ops: 1000, Errors: 2, Misses: 3, Elapsed: 2 * time.Second, Hist: h, FirstErr: errors.New("x")})
	l := r.LatencyUs
	if r.OpsPerSec != 500 || l.P50 != 500 || l.P90 != 900 || l.P99 != 990 || l.P999 != 999 || l.Max != 1000 {
		t.Fatalf("report %+v", r)
	}
	var out bytes.Buffer
	if err := writeBenchReport(&out, "simple", r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"OPS/S", "P99.9", "cubekv", "500µs", "990µs", "1.00ms", "first error: x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table %q lacks %q", out.String(), want)
		}
	}
	out.Reset()
	if err := writeBenchReport(&out, "json", r); err != nil {
		t.Fatal(err)
	}
	var back benchReport
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

func TestBenchKey_FixedWidth(t *testing.T) {
	if got := string(benchKey(42, 16)); got != "0000000000000042" {
		t.Fatalf("benchKey(42, 16) = %q", got)
	}
	if got := string(benchKey(99999, 5)); got != "99999" {
		t.Fatalf("benchKey(99999, 5) = %q", got)
	}
}

func TestBenchOptions_ValidateRefusesBadFlags(t *testing.T) {
	g := defaultGlobalOptions()
	bad := []func(o *benchOptions){
		func(o *benchOptions) { o.workload = "nope" },
		func(o *benchOptions) { o.clients = 0 },
		func(o *benchOptions) { o.conns = o.clients + 1 },
		func(o *benchOptions) { o.keys = 1000; o.keySize = 2 },
		func(o *benchOptions) { o.duration, o.ops = 0, 0 },
		func(o *benchOptions) { o.readRatio = 1.5 },
		func(o *benchOptions) { o.rate = -1 },
		func(o *benchOptions) { o.workload = workloadTxn; o.keys = 1 },
	}
	for i, mod := range bad {
		o := defaultBenchOptions()
		mod(o)
		var ue *usageError
		if err := o.validate(g); !errors.As(err, &ue) {
			t.Errorf("case %d: validate = %v, want a usage error", i, err)
		}
	}
	if err := defaultBenchOptions().validate(g); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

// mustBenchJSON runs kvctl bench with o against g and decodes its JSON report.
func mustBenchJSON(t *testing.T, g *globalOptions, o *benchOptions) (*benchReport, string) {
	t.Helper()
	g.output = "json"
	var stdout, stderr bytes.Buffer
	if err := runBench(context.Background(), g, o, &stdout, &stderr); err != nil {
		t.Fatalf("bench %s: %v\nstderr: %s", o.workload, err, stderr.String())
	}
	var r benchReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("bench %s: output %q: %v", o.workload, stdout.String(), err)
	}
	return &r, stderr.String()
}

func TestRunBench_EveryWorkloadAgainstFakeServer(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	for _, wl := range []string{workloadPut, workloadGet, workloadMixed, workloadScan, workloadCAS, workloadTxn} {
		o := defaultBenchOptions()
		o.workload, o.clients, o.conns, o.keys, o.ops, o.duration, o.progress = wl, 4, 2, 50, 200, 0, 0
		o.preload = wl == workloadGet || wl == workloadCAS
		r, _ := mustBenchJSON(t, g, o)
		if r.Workload != wl || r.Ops != 200 || r.Errors != 0 || r.System != "cubekv" || r.Clients != 4 || r.Conns != 2 {
			t.Errorf("%s: report %+v", wl, r)
		}
		if wl == workloadGet && r.Misses != 0 {
			t.Errorf("get after preload: %d misses, want 0", r.Misses)
		}
	}
	for i := range 50 {
		if _, ok := srv.Value(string(benchKey(i, 16))); !ok {
			t.Fatalf("key %d absent after preload", i)
		}
	}
}

func TestRunBench_LoadWritesEveryKeyOnce(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	o := defaultBenchOptions()
	o.workload, o.clients, o.keys, o.progress = workloadLoad, 3, 100, 0
	r, _ := mustBenchJSON(t, g, o)
	if r.Ops != 100 || r.Errors != 0 {
		t.Fatalf("report %+v", r)
	}
	for i := range 100 {
		if n := srv.Applies(string(benchKey(i, 16))); n != 1 {
			t.Fatalf("key %d written %d times, want once", i, n)
		}
	}
}

func TestRunBench_ServerDownFails(t *testing.T) {
	g := defaultGlobalOptions()
	g.endpoints = deadAddr(t)
	g.timeout = 200 * time.Millisecond
	o := defaultBenchOptions()
	o.clients, o.ops, o.duration, o.progress, o.maxRetries = 1, 3, 0, 0, -1
	var stdout, stderr bytes.Buffer
	err := runBench(context.Background(), g, o, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "every operation failed") {
		t.Fatalf("bench against nothing = %v, want every operation failed", err)
	}
	if !strings.Contains(stdout.String(), "cubekv") {
		t.Fatalf("the report is printed even when everything failed: %q", stdout.String())
	}
}

// mustKVNode builds kvnode and starts a single-node cluster on free ports in a temp dir; it returns
// the Thrift address. The node is killed when the test ends.
func mustKVNode(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "kvnode")
	build := exec.Command("go", "build", "-o", bin, "github.com/cubekv/cubekv/cmd/kvnode")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kvnode: %v\n%s", err, out)
	}
	thrift, admin := deadAddr(t), deadAddr(t)
	logf, err := os.Create(filepath.Join(dir, "kvnode.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--id", "n1", "--data-dir", filepath.Join(dir, "data"), "--thrift-addr", thrift,
		"--raft-addr", deadAddr(t), "--admin-addr", admin, "--gossip-addr", deadAddr(t))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kvnode: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return thrift
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "kvnode.log"))
			t.Fatalf("kvnode not ready after 30s (last err %v)\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRunBench_AgainstRealKVNode(t *testing.T) {
	addr := mustKVNode(t)
	g := defaultGlobalOptions()
	g.endpoints = addr
	o := defaultBenchOptions()
	o.workload, o.clients, o.conns, o.keys, o.duration, o.progress, o.preload = workloadGet, 8, 2, 500, time.Second, 250*time.Millisecond, true
	r, progress := mustBenchJSON(t, g, o)
	if r.Ops == 0 || r.Errors != 0 || r.Misses != 0 || r.Consistency != "linearizable" {
		t.Fatalf("linearizable get after preload: %+v", r)
	}
	if r.LatencyUs.P50 <= 0 || r.LatencyUs.P50 > r.LatencyUs.P99 || r.LatencyUs.P99 > r.LatencyUs.Max {
		t.Fatalf("latencies out of order: %+v", r.LatencyUs)
	}
	if !strings.Contains(progress, "preload: 500 keys") || !strings.Contains(progress, "get ") {
		t.Fatalf("progress %q: want the preload summary and get lines", progress)
	}

	o = defaultBenchOptions()
	o.workload, o.clients, o.keys, o.ops, o.duration, o.rate, o.progress = workloadPut, 4, 500, 100, 0, 200, 0
	r, _ = mustBenchJSON(t, g, o)
	if r.Ops != 100 || r.Errors != 0 || r.Rate != 200 {
		t.Fatalf("open-loop put: %+v", r)
	}
	// 100 ops at 200/s take at least the 495ms of the schedule.
	if r.Seconds < 0.49 {
		t.Fatalf("open-loop put took %.3fs, want at least the scheduled 0.495s", r.Seconds)
	}
}

func TestRunBench_InterruptedPrintsReportAndFails(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	g.output = "json"
	o := defaultBenchOptions()
	o.clients, o.keys, o.duration, o.progress = 2, 10, time.Hour, 0
	ctx, cancel := context.WithCancel(context.Background())
	// Cancel once some puts have landed, as Ctrl-C would.
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && len(srv.Calls()) < 20 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	var stdout, stderr bytes.Buffer
	err := runBench(ctx, g, o, &stdout, &stderr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted bench = %v, want context.Canceled", err)
	}
	var r benchReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Ops == 0 || r.Errors != 0 {
		t.Fatalf("report after interrupt %q (%v): want the operations done so far, no errors", stdout.String(), err)
	}
}
