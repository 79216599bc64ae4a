package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/loadgen"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Bench workloads.
const (
	workloadPut   = "put"   // put a random key
	workloadGet   = "get"   // get a random key (--consistency)
	workloadMixed = "mixed" // get with probability --read-ratio, else put
	workloadScan  = "scan"  // scan --scan-limit entries from a random key
	workloadCAS   = "cas"   // CAS a random key on the mod index this worker last saw
	workloadTxn   = "txn"   // a transaction: if key a exists, put a and b; else put a
	workloadLoad  = "load"  // put every key of the key space once, in order
)

// benchOptions are the flags of kvctl bench.
type benchOptions struct {
	workload   string
	clients    int
	conns      int
	keys       int
	keySize    int
	valueSize  int
	duration   time.Duration
	ops        int64
	rate       float64
	readRatio  float64
	scanLimit  int
	preload    bool
	spread     bool
	progress   time.Duration
	seed       uint64
	maxRetries int
	cpuProfile string
}

func defaultBenchOptions() *benchOptions {
	return &benchOptions{
		workload:  workloadPut,
		clients:   16,
		conns:     1,
		keys:      100_000,
		keySize:   16,
		valueSize: 100,
		duration:  10 * time.Second,
		readRatio: 0.9,
		scanLimit: 10,
		progress:  time.Second,
		seed:      1,
	}
}

func newBenchCmd(g *globalOptions) *cobra.Command {
	o := defaultBenchOptions()
	cmd := &cobra.Command{
		Use:   "bench WORKLOAD",
		Short: "Measure throughput and latency: put, get, mixed, scan, cas, txn or load",
		Long: `Run WORKLOAD from --clients concurrent workers for --duration (or --ops operations) and print
ops/s and latency percentiles (p50, p90, p99, p99.9, max). Workers share --conns clients round-robin;
each client pools one connection per concurrent call. Keys are --key-size digits, drawn uniformly from
--keys; values are --value-size bytes. get reads with --consistency. With --rate the run is open-loop:
operations are scheduled at fixed intervals and latency is measured from each one's scheduled start.
load writes every key once; --preload does the same before the workload. A progress line goes to
stderr every --progress. --timeout bounds each operation.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.workload = args[0]
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return runBench(ctx, g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.clients, "clients", o.clients, "concurrent workers")
	f.IntVar(&o.conns, "conns", o.conns, "clients (each with its own connection pool) the workers share round-robin")
	f.IntVar(&o.keys, "keys", o.keys, "size of the key space")
	f.IntVar(&o.keySize, "key-size", o.keySize, "key length in bytes")
	f.IntVar(&o.valueSize, "value-size", o.valueSize, "value length in bytes")
	f.DurationVar(&o.duration, "duration", o.duration, "run time (0: until --ops)")
	f.Int64Var(&o.ops, "ops", o.ops, "number of operations (0: until --duration)")
	f.Float64Var(&o.rate, "rate", o.rate, "open-loop target rate, operations per second over all workers (0: closed loop)")
	f.Float64Var(&o.readRatio, "read-ratio", o.readRatio, "mixed: fraction of operations that are gets")
	f.IntVar(&o.scanLimit, "scan-limit", o.scanLimit, "scan: entries per scan")
	f.BoolVar(&o.preload, "preload", o.preload, "write every key once before the workload")
	f.BoolVar(&o.spread, "spread-reads", o.spread, "send reads to every member round-robin (linearizable ones not only to the leader, stale ones not only to the first endpoint)")
	f.DurationVar(&o.progress, "progress", o.progress, "interval of progress lines on stderr (0: none)")
	f.Uint64Var(&o.seed, "seed", o.seed, "seed of the key choice")
	f.IntVar(&o.maxRetries, "max-retries", o.maxRetries, "client retries per operation (0: the client's default, negative: none)")
	f.StringVar(&o.cpuProfile, "cpuprofile", o.cpuProfile, "write a CPU profile of this process during the workload (not the preload) to this file")
	return cmd
}

// validate checks the options and the global ones the benchmark uses.
func (o *benchOptions) validate(g *globalOptions) error {
	switch o.workload {
	case workloadPut, workloadGet, workloadMixed, workloadScan, workloadCAS, workloadTxn, workloadLoad:
	default:
		return usageErrorf("workload %q: want put, get, mixed, scan, cas, txn or load", o.workload)
	}
	switch {
	case o.clients < 1:
		return usageErrorf("--clients %d: want at least 1", o.clients)
	case o.conns < 1 || o.conns > o.clients:
		return usageErrorf("--conns %d: want 1 to --clients (%d)", o.conns, o.clients)
	case o.keys < 1:
		return usageErrorf("--keys %d: want at least 1", o.keys)
	case o.keySize < len(strconv.Itoa(o.keys-1)):
		return usageErrorf("--key-size %d: too short for %d keys (want at least %d)", o.keySize, o.keys, len(strconv.Itoa(o.keys-1)))
	case o.valueSize < 0:
		return usageErrorf("--value-size %d: want 0 or more", o.valueSize)
	case o.duration < 0 || o.ops < 0 || o.rate < 0 || o.progress < 0:
		return usageErrorf("--duration, --ops, --rate and --progress must not be negative")
	case o.workload != workloadLoad && o.duration == 0 && o.ops == 0:
		return usageErrorf("one of --duration and --ops is required")
	case o.readRatio < 0 || o.readRatio > 1:
		return usageErrorf("--read-ratio %g: want 0 to 1", o.readRatio)
	case o.scanLimit < 1:
		return usageErrorf("--scan-limit %d: want at least 1", o.scanLimit)
	case g.timeout <= 0:
		return usageErrorf("--timeout %v: bench needs a positive per-operation time limit", g.timeout)
	}
	if o.workload == workloadTxn && o.keys < 2 {
		return usageErrorf("txn needs --keys of at least 2")
	}
	return nil
}

// benchWorker is one worker's own state; only that worker touches it.
type benchWorker struct {
	c     *client.Client
	rng   *rand.Rand
	value []byte
	// modIndex is the mod index the worker last saw per key (cas).
	modIndex map[int]int64
}

// benchTarget runs cubekv operations for the workers.
type benchTarget struct {
	o       *benchOptions
	timeout time.Duration
	cons    kv.Consistency
	workers []*benchWorker
	next    atomic.Int64 // the next key to write (load)
}

// op returns the operation of workload.
func (t *benchTarget) op(workload string) loadgen.Op {
	call := func(ctx context.Context, w int, fn func(ctx context.Context, bw *benchWorker) (bool, error)) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, t.timeout)
		defer cancel()
		return fn(ctx, t.workers[w])
	}
	key := func(bw *benchWorker) (int, []byte) {
		i := bw.rng.IntN(t.o.keys)
		return i, loadgen.Key(i, t.o.keySize)
	}
	put := func(ctx context.Context, bw *benchWorker) (bool, error) {
		_, k := key(bw)
		_, err := bw.c.Put(ctx, k, bw.value)
		return false, err
	}
	get := func(ctx context.Context, bw *benchWorker) (bool, error) {
		_, k := key(bw)
		resp, err := bw.c.Get(ctx, k, client.WithConsistency(t.cons))
		if err != nil {
			return false, err
		}
		return !resp.Found, nil
	}
	var fn func(ctx context.Context, bw *benchWorker) (bool, error)
	switch workload {
	case workloadPut:
		fn = put
	case workloadGet:
		fn = get
	case workloadMixed:
		fn = func(ctx context.Context, bw *benchWorker) (bool, error) {
			if bw.rng.Float64() < t.o.readRatio {
				return get(ctx, bw)
			}
			return put(ctx, bw)
		}
	case workloadScan:
		fn = func(ctx context.Context, bw *benchWorker) (bool, error) {
			_, k := key(bw)
			resp, err := bw.c.Scan(ctx, &kv.ScanRequest{StartKey: k, Limit: new(int32(t.o.scanLimit)), Consistency: &t.cons})
			if err != nil {
				return false, err
			}
			return len(resp.Entries) == 0, nil
		}
	case workloadCAS:
		fn = func(ctx context.Context, bw *benchWorker) (bool, error) {
			i, k := key(bw)
			resp, err := bw.c.CAS(ctx, &kv.CASRequest{Key: k, ExpectedModIndex: new(bw.modIndex[i]), Value: bw.value})
			if err != nil {
				return false, err
			}
			switch {
			case resp.Succeeded:
				bw.modIndex[i] = resp.Index
			case resp.Current != nil:
				bw.modIndex[i] = resp.Current.ModIndex
			default:
				bw.modIndex[i] = 0
			}
			return !resp.Succeeded, nil
		}
	case workloadTxn:
		fn = func(ctx context.Context, bw *benchWorker) (bool, error) {
			i, a := key(bw)
			j := bw.rng.IntN(t.o.keys - 1)
			if j >= i {
				j++
			}
			b := loadgen.Key(j, t.o.keySize)
			resp, err := bw.c.Txn(ctx, &kv.TxnRequest{
				Compares: []*kv.Compare{{Key: a, Target: kv.CompareTarget_EXISTS, Exists: new(true)}},
				Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: a, Value: bw.value}, {Type: kv.OpType_PUT, Key: b, Value: bw.value}},
				Failure:  []*kv.Op{{Type: kv.OpType_PUT, Key: a, Value: bw.value}},
			})
			if err != nil {
				return false, err
			}
			return !resp.Succeeded, nil
		}
	case workloadLoad:
		fn = func(ctx context.Context, bw *benchWorker) (bool, error) {
			i := int(t.next.Add(1) - 1)
			_, err := bw.c.Put(ctx, loadgen.Key(i, t.o.keySize), bw.value)
			return false, err
		}
	}
	return func(ctx context.Context, w int) (bool, error) { return call(ctx, w, fn) }
}

// startCPUProfile starts a CPU profile into path (nothing when path is empty) and returns the function
// that stops it and closes the file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		return nil
	}, nil
}

// runBench runs the benchmark o describes against the cluster of g and prints the report on stdout and
// progress lines on stderr.
func runBench(ctx context.Context, g *globalOptions, o *benchOptions, stdout, stderr io.Writer) error {
	if err := o.validate(g); err != nil {
		return err
	}
	if g.output != "simple" && g.output != "json" && g.output != "" {
		return usageErrorf("--output %q: want simple or json", g.output)
	}
	// newClient validates --endpoints and --consistency.
	probe, err := g.newClient()
	if err != nil {
		return err
	}
	_ = probe.Close()
	cons := kv.Consistency_LINEARIZABLE
	if strings.EqualFold(g.consistency, "stale") {
		cons = kv.Consistency_STALE
	}
	var eps []string
	for e := range strings.SplitSeq(g.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	tlsCfg, err := g.tlsConfig()
	if err != nil {
		return err
	}
	perConn := (o.clients + o.conns - 1) / o.conns
	clients := make([]*client.Client, o.conns)
	for i := range clients {
		c, err := client.New(client.Config{
			Endpoints:               eps,
			Consistency:             cons,
			SpreadLinearizableReads: o.spread,
			SpreadStaleReads:        o.spread,
			MaxIdlePerEndpoint:      perConn,
			MaxRetries:              o.maxRetries,
			Dial:                    transport.DialConfig{TLS: tlsCfg},
		})
		if err != nil {
			return &usageError{err: err}
		}
		clients[i] = c
		defer c.Close()
	}
	t := &benchTarget{o: o, timeout: g.timeout, cons: cons, workers: make([]*benchWorker, o.clients)}
	for w := range t.workers {
		rng := rand.New(rand.NewPCG(o.seed, uint64(w)))
		t.workers[w] = &benchWorker{
			c:        clients[w%o.conns],
			rng:      rng,
			value:    loadgen.Value(rng, o.valueSize),
			modIndex: map[int]int64{},
		}
	}
	report := &loadgen.Report{
		System:    "cubekv",
		Workload:  o.workload,
		Clients:   o.clients,
		Conns:     o.conns,
		Keys:      o.keys,
		KeySize:   o.keySize,
		ValueSize: o.valueSize,
		Rate:      o.rate,
	}
	switch o.workload {
	case workloadGet, workloadMixed, workloadScan:
		report.Consistency = strings.ToLower(cons.String())
	}

	if o.preload && o.workload != workloadLoad {
		res := loadgen.Run(ctx, loadgen.Config{Workers: o.clients, Ops: int64(o.keys), Progress: o.progress, Label: "preload"},
			t.op(workloadLoad), stderr)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		if res.Errors > 0 {
			return fmt.Errorf("preload: %d of %d puts failed: %w", res.Errors, o.keys, res.FirstErr)
		}
		fmt.Fprintf(stderr, "preload: %d keys in %.1fs\n", res.Ops, res.Elapsed.Seconds())
	}

	cfg := loadgen.Config{
		Workers:  o.clients,
		Duration: o.duration,
		Ops:      o.ops,
		Rate:     o.rate,
		Progress: o.progress,
		Label:    o.workload,
	}
	if o.workload == workloadLoad {
		t.next.Store(0)
		cfg.Duration, cfg.Ops, cfg.Rate = 0, int64(o.keys), 0
	}
	stopProfile, err := startCPUProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	res := loadgen.Run(ctx, cfg, t.op(o.workload), stderr)
	if err := stopProfile(); err != nil {
		return err
	}
	report.Fill(res)
	if err := loadgen.WriteReport(stdout, g.output, report); err != nil {
		return fmt.Errorf("print: %w", err)
	}
	if err := ctx.Err(); err != nil {
		// Interrupted: the report covers what ran; the error tells scripts the run is incomplete.
		return fmt.Errorf("bench %s: interrupted: %w", o.workload, err)
	}
	if res.Ops == 0 && res.Errors > 0 {
		return fmt.Errorf("bench %s: every operation failed: %w", o.workload, res.FirstErr)
	}
	if res.Ops == 0 {
		return errors.New("bench: no operation completed")
	}
	return nil
}
