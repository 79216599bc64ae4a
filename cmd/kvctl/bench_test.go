package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/loadgen"
	"github.com/cubekv/cubekv/internal/testutil"
)

func TestBenchKey_FixedWidth(t *testing.T) {
	if got := string(loadgen.Key(42, 16)); got != "0000000000000042" {
		t.Fatalf("loadgen.Key(42, 16) = %q", got)
	}
	if got := string(loadgen.Key(99999, 5)); got != "99999" {
		t.Fatalf("loadgen.Key(99999, 5) = %q", got)
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
func mustBenchJSON(t *testing.T, g *globalOptions, o *benchOptions) (*loadgen.Report, string) {
	t.Helper()
	g.output = "json"
	var stdout, stderr bytes.Buffer
	if err := runBench(context.Background(), g, o, &stdout, &stderr); err != nil {
		t.Fatalf("bench %s: %v\nstderr: %s", o.workload, err, stderr.String())
	}
	var r loadgen.Report
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
		if _, ok := srv.Value(string(loadgen.Key(i, 16))); !ok {
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
		if n := srv.Applies(string(loadgen.Key(i, 16))); n != 1 {
			t.Fatalf("key %d written %d times, want once", i, n)
		}
	}
}

func TestRunBench_ServerDownFails(t *testing.T) {
	g := defaultGlobalOptions()
	g.endpoints = testutil.DeadAddr(t)
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
	thrift, admin := testutil.DeadAddr(t), testutil.DeadAddr(t)
	logf, err := os.Create(filepath.Join(dir, "kvnode.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--id", "n1", "--data-dir", filepath.Join(dir, "data"), "--thrift-addr", thrift,
		"--raft-addr", testutil.DeadAddr(t), "--admin-addr", admin, "--gossip-addr", testutil.DeadAddr(t))
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
	err = testutil.Poll(30*time.Second, func() error {
		resp, err := hc.Get("http://" + admin + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready answered %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "kvnode.log"))
		t.Fatalf("kvnode not ready: %v\n%s", err, log)
	}
	return thrift
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
		// Cancelled after 10 s even if the puts never land: the bench must stop either way.
		_ = testutil.Poll(10*time.Second, func() error {
			if n := len(srv.Calls()); n < 20 {
				return fmt.Errorf("%d calls", n)
			}
			return nil
		})
		cancel()
	}()
	var stdout, stderr bytes.Buffer
	err := runBench(ctx, g, o, &stdout, &stderr)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted bench = %v, want context.Canceled", err)
	}
	var r loadgen.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Ops == 0 || r.Errors != 0 {
		t.Fatalf("report after interrupt %q (%v): want the operations done so far, no errors", stdout.String(), err)
	}
}

func TestRunBench_CPUProfileWritesAProfile(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	g := mustGlobals(t, srv)
	o := defaultBenchOptions()
	o.workload, o.clients, o.keys, o.ops, o.duration, o.progress = workloadPut, 2, 50, 200, 0, 0
	o.cpuProfile = filepath.Join(t.TempDir(), "cpu.pprof")
	r, _ := mustBenchJSON(t, g, o)
	if r.Ops != 200 || r.Errors != 0 {
		t.Fatalf("report %+v", r)
	}
	// A pprof profile is a gzip-compressed protocol buffer.
	f, err := os.Open(o.cpuProfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("profile %s: %v", o.cpuProfile, err)
	}
	body, err := io.ReadAll(zr)
	if err != nil || len(body) == 0 {
		t.Fatalf("profile %s: %d bytes, %v", o.cpuProfile, len(body), err)
	}
}
