// Command etcdload drives an etcd cluster with the workloads of `kvctl bench` (put, get, mixed,
// load) and prints the same report (a table, or JSON with -o json), so that bench/compare.sh can put
// the two systems side by side. It lives in its own module so that the etcd client stays out of
// cubekv's module graph.
//
// Keys and values are made exactly as kvctl bench makes them: keys are --key-size digits drawn
// uniformly from --keys, values --value-size printable bytes. --conns clientv3 clients (one gRPC
// connection each, balanced over --endpoints) are shared round-robin by --clients workers.
// --consistency linearizable reads with etcd's default (linearizable) reads; stale uses
// serializable reads.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cubekv/cubekv/internal/loadgen"
)

type options struct {
	endpoints   string
	workload    string
	consistency string
	output      string
	clients     int
	conns       int
	keys        int
	keySize     int
	valueSize   int
	duration    time.Duration
	ops         int64
	rate        float64
	readRatio   float64
	preload     bool
	progress    time.Duration
	timeout     time.Duration
	seed        uint64
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := options{}
	fs := flag.NewFlagSet("etcdload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoints, "endpoints", "127.0.0.1:2379", "comma-separated etcd client addresses")
	fs.StringVar(&o.workload, "workload", "put", "put, get, mixed or load")
	fs.StringVar(&o.consistency, "consistency", "linearizable", "linearizable or stale (serializable)")
	fs.StringVar(&o.output, "o", "simple", "output: simple or json")
	fs.IntVar(&o.clients, "clients", 16, "concurrent workers")
	fs.IntVar(&o.conns, "conns", 1, "etcd clients (gRPC connections) shared round-robin by the workers")
	fs.IntVar(&o.keys, "keys", 100_000, "size of the key space")
	fs.IntVar(&o.keySize, "key-size", 16, "key length in bytes")
	fs.IntVar(&o.valueSize, "value-size", 100, "value length in bytes")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "run time (0: until --ops)")
	fs.Int64Var(&o.ops, "ops", 0, "number of operations (0: until --duration)")
	fs.Float64Var(&o.rate, "rate", 0, "open-loop rate, operations per second over all workers (0: closed loop)")
	fs.Float64Var(&o.readRatio, "read-ratio", 0.9, "mixed: fraction of gets")
	fs.BoolVar(&o.preload, "preload", false, "write every key once before the workload")
	fs.DurationVar(&o.progress, "progress", time.Second, "interval of progress lines on stderr (0: none)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "time limit of one operation")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the key choice")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.workload != "put" && o.workload != "get" && o.workload != "mixed" && o.workload != "load":
		return fmt.Errorf("--workload %q: want put, get, mixed or load", o.workload)
	case o.clients < 1 || o.conns < 1 || o.conns > o.clients:
		return errors.New("want 1 <= --conns <= --clients")
	case o.keys < 1 || o.keySize < len(strconv.Itoa(o.keys-1)):
		return errors.New("--key-size too short for --keys")
	case o.timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	var readOpts []clientv3.OpOption
	switch o.consistency {
	case "linearizable":
	case "stale":
		readOpts = append(readOpts, clientv3.WithSerializable())
	default:
		return fmt.Errorf("--consistency %q: want linearizable or stale", o.consistency)
	}
	eps := strings.Split(o.endpoints, ",")
	clients := make([]*clientv3.Client, o.conns)
	for i := range clients {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("etcd client: %w", err)
		}
		clients[i] = c
		defer c.Close()
	}
	type worker struct {
		c     *clientv3.Client
		rng   *rand.Rand
		value string
	}
	workers := make([]*worker, o.clients)
	for w := range workers {
		rng := rand.New(rand.NewPCG(o.seed, uint64(w)))
		workers[w] = &worker{c: clients[w%o.conns], rng: rng, value: string(loadgen.Value(rng, o.valueSize))}
	}
	var next atomic.Int64
	key := func(bw *worker) string { return string(loadgen.Key(bw.rng.IntN(o.keys), o.keySize)) }
	put := func(ctx context.Context, bw *worker) (bool, error) {
		_, err := bw.c.Put(ctx, key(bw), bw.value)
		return false, err
	}
	get := func(ctx context.Context, bw *worker) (bool, error) {
		resp, err := bw.c.Get(ctx, key(bw), readOpts...)
		if err != nil {
			return false, err
		}
		return len(resp.Kvs) == 0, nil
	}
	load := func(ctx context.Context, bw *worker) (bool, error) {
		i := int(next.Add(1) - 1)
		_, err := bw.c.Put(ctx, string(loadgen.Key(i, o.keySize)), bw.value)
		return false, err
	}
	mixed := func(ctx context.Context, bw *worker) (bool, error) {
		if bw.rng.Float64() < o.readRatio {
			return get(ctx, bw)
		}
		return put(ctx, bw)
	}
	wrap := func(fn func(ctx context.Context, bw *worker) (bool, error)) loadgen.Op {
		return func(ctx context.Context, w int) (bool, error) {
			ctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			return fn(ctx, workers[w])
		}
	}
	ops := map[string]loadgen.Op{"put": wrap(put), "get": wrap(get), "mixed": wrap(mixed), "load": wrap(load)}

	if o.preload && o.workload != "load" {
		res := loadgen.Run(ctx, loadgen.Config{Workers: o.clients, Ops: int64(o.keys), Progress: o.progress, Label: "preload"}, ops["load"], stderr)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		if res.Errors > 0 {
			return fmt.Errorf("preload: %d puts failed: %w", res.Errors, res.FirstErr)
		}
		fmt.Fprintf(stderr, "preload: %d keys in %.1fs\n", res.Ops, res.Elapsed.Seconds())
	}
	cfg := loadgen.Config{Workers: o.clients, Duration: o.duration, Ops: o.ops, Rate: o.rate, Progress: o.progress, Label: o.workload}
	if o.workload == "load" {
		next.Store(0)
		cfg.Duration, cfg.Ops, cfg.Rate = 0, int64(o.keys), 0
	}
	res := loadgen.Run(ctx, cfg, ops[o.workload], stderr)
	report := &loadgen.Report{
		System: "etcd", Workload: o.workload, Clients: o.clients, Conns: o.conns, Keys: o.keys,
		KeySize: o.keySize, ValueSize: o.valueSize, Rate: o.rate,
	}
	if o.workload == "get" || o.workload == "mixed" {
		report.Consistency = o.consistency
	}
	report.Fill(res)
	if err := loadgen.WriteReport(stdout, o.output, report); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if res.Ops == 0 {
		return fmt.Errorf("no operation completed: %v", res.FirstErr)
	}
	return nil
}
