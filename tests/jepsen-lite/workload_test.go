package jepsenlite

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Kinds recorded for the counter workload (not checked by porcupine).
const (
	kindCtrRead = "ctr-read"
	kindResend  = "incr-resend"
)

// workloadConfig sizes the traffic of one scenario.
type workloadConfig struct {
	registerWorkers int
	setWorkers      int
	counterWorkers  int
	counterKeys     int
	keysPerGen      int   // register keys in use at a time
	opsPerGen       int64 // register operations before moving to fresh keys
	opTimeout       time.Duration
	resendProb      float64     // chance of resending an acknowledged increment with its request id
	tls             *tls.Config // client TLS; nil: plaintext
}

// workload drives the register, set and counter clients of one scenario.
type workload struct {
	cfg       workloadConfig
	rec       *recorder
	prefix    string // key prefix of the scenario
	endpoints []string
	seed      uint64

	regOps    atomic.Int64
	nextValue atomic.Int64
	setSeq    atomic.Int64

	// mu guards tallies and clients.
	mu      sync.Mutex
	tallies map[string]*counterTally
	clients []*client.Client
}

func newWorkload(cfg workloadConfig, rec *recorder, prefix string, endpoints []string, seed uint64) *workload {
	return &workload{cfg: cfg, rec: rec, prefix: prefix, endpoints: endpoints, seed: seed, tallies: map[string]*counterTally{}}
}

// clientMode says how a client finds nodes.
type clientMode int

const (
	// discover: topology discovery on, LINEARIZABLE reads at the leader.
	discover clientMode = iota + 1
	// discoverSpread: topology discovery on, LINEARIZABLE reads spread over every member.
	discoverSpread
	// pinned: discovery off; requests go to the given endpoints only (a NotLeader answer may
	// still redirect a write to the leader it names).
	pinned
)

// newClient returns a client whose endpoint list starts at endpoints[first].
func (w *workload) newClient(endpoints []string, first int, retries int, mode clientMode) *client.Client {
	eps := append(slices.Clone(endpoints[first%len(endpoints):]), endpoints[:first%len(endpoints)]...)
	c, err := client.New(client.Config{
		Endpoints:               eps,
		DisableDiscovery:        mode == pinned,
		SpreadLinearizableReads: mode == discoverSpread,
		Dial:                    transport.DialConfig{ConnectTimeout: 500 * time.Millisecond, RequestTimeout: 3 * time.Second, TLS: w.cfg.tls},
		MaxRetries:              retries,
		Backoff:                 20 * time.Millisecond,
		MaxBackoff:              300 * time.Millisecond,
	})
	if err != nil {
		panic(fmt.Sprintf("client config: %v", err)) // the config above is static and valid
	}
	w.mu.Lock()
	w.clients = append(w.clients, c)
	w.mu.Unlock()
	return c
}

func (w *workload) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.clients {
		_ = c.Close()
	}
	w.clients = nil
}

func (w *workload) regKey(gen int64, i int) string {
	return fmt.Sprintf("%s/reg/%06d/%d", w.prefix, gen, i)
}
func (w *workload) setPrefix() string       { return w.prefix + "/set/" }
func (w *workload) counterKey(i int) string { return fmt.Sprintf("%s/ctr/%d", w.prefix, i) }

// run starts every worker; they stop starting operations when ctx ends, and
// run returns when the last operation has completed.
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	id := 0
	for i := 0; i < w.cfg.registerWorkers; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); w.registerWorker(ctx, i) }(id)
		id++
	}
	for i := 0; i < w.cfg.setWorkers; i++ {
		wg.Add(1)
		go func(i int) { defer wg.Done(); w.setWorker(ctx, i) }(id)
		id++
	}
	for i := 0; i < w.cfg.counterWorkers; i++ {
		wg.Add(1)
		go func(i, k int) { defer wg.Done(); w.counterWorker(ctx, i, w.counterKey(k)) }(id, i%w.cfg.counterKeys)
		id++
	}
	wg.Wait()
}

func encode(v int64) []byte { return []byte(strconv.FormatInt(v, 10)) }

func decode(b []byte) int64 {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return -1 // never written by the suite: shows up as a violation
	}
	return v
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// registerWorker reads, writes, deletes and CASes a rotating set of keys.
func (w *workload) registerWorker(ctx context.Context, idx int) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(idx)+1))
	mode := discover
	if idx%2 == 1 {
		mode = discoverSpread
	}
	cl := w.newClient(w.endpoints, idx, 3, mode)
	proc := w.rec.process()
	last := map[string]int64{}
	for ctx.Err() == nil {
		n := w.regOps.Add(1)
		gen := n / w.cfg.opsPerGen
		key := w.regKey(gen, rng.IntN(w.cfg.keysPerGen))
		octx, cancel := context.WithTimeout(context.Background(), w.cfg.opTimeout)
		o := op{Process: proc, Key: key}
		r := rng.IntN(100)
		o.Call = w.rec.now()
		switch {
		case r < 50:
			o.Kind = kindRead
			resp, err := cl.Get(octx, []byte(key))
			o.Return = w.rec.now()
			o.Outcome, o.Err = classifyRead(err), errString(err)
			if err == nil {
				if resp.Found {
					o.Value = decode(resp.Entry.Value)
				}
				o.Node = resp.Info.NodeID
				last[key] = o.Value
			}
		case r < 70:
			o.Kind = kindWrite
			o.Value = w.nextValue.Add(1)
			resp, err := cl.Put(octx, []byte(key), encode(o.Value))
			o.Return = w.rec.now()
			o.Outcome, o.Err = classifyWrite(err), errString(err)
			if err == nil {
				o.Index = resp.Index
			}
		case r < 75:
			// A delete is a write of "absent" (0) to the register, and a DELETE event in the
			// watch history when the key existed.
			o.Kind = kindDelete
			resp, err := cl.Delete(octx, []byte(key))
			o.Return = w.rec.now()
			o.Outcome, o.Err = classifyWrite(err), errString(err)
			if err == nil {
				o.Index = resp.Index
				o.Success = resp.Deleted
				last[key] = 0
			}
		default:
			o.Kind = kindCAS
			o.Value = w.nextValue.Add(1)
			o.Expect = last[key]
			req := &kv.CASRequest{Key: []byte(key), Value: encode(o.Value)}
			if o.Expect == 0 {
				req.ExpectedModIndex = thrift.Int64Ptr(0)
			} else {
				req.ExpectedValue = encode(o.Expect)
			}
			resp, err := cl.CAS(octx, req)
			o.Return = w.rec.now()
			o.Outcome, o.Err = classifyWrite(err), errString(err)
			if err == nil {
				o.Success = resp.Succeeded
				if !resp.Succeeded && resp.Current != nil {
					o.Current = decode(resp.Current.Value)
				}
				if resp.Succeeded {
					last[key] = o.Value
					o.Index = resp.Index
				} else {
					last[key] = o.Current
				}
			}
		}
		cancel()
		w.rec.add(o)
		if o.Outcome == outcomeUnknown {
			proc = w.rec.process()
		}
	}
}

// setWorker adds unique keys.
func (w *workload) setWorker(ctx context.Context, idx int) {
	cl := w.newClient(w.endpoints, idx, 3, discover)
	proc := w.rec.process()
	for ctx.Err() == nil {
		key := fmt.Sprintf("%s%09d", w.setPrefix(), w.setSeq.Add(1))
		octx, cancel := context.WithTimeout(context.Background(), w.cfg.opTimeout)
		o := op{Process: proc, Kind: kindAdd, Key: key, Call: w.rec.now()}
		resp, err := cl.Put(octx, []byte(key), []byte("1"))
		cancel()
		o.Return = w.rec.now()
		o.Outcome, o.Err = classifyWrite(err), errString(err)
		if err == nil {
			o.Index = resp.Index
		}
		w.rec.add(o)
		if o.Outcome == outcomeUnknown {
			proc = w.rec.process()
		}
	}
}

// tally returns the counter tally of key.
func (w *workload) tally(key string) *counterTally {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.tallies[key]
	if !ok {
		t = &counterTally{}
		w.tallies[key] = t
	}
	return t
}

// counterWorker increments key by CAS, one logical increment per request id,
// resending each id on purpose: after an unknown outcome until it is known (or
// the budget runs out), and sometimes after success, when the answer must be
// the remembered one.
func (w *workload) counterWorker(ctx context.Context, idx int, key string) {
	rng := rand.New(rand.NewPCG(w.seed, uint64(idx)+1))
	cl := w.newClient(w.endpoints, idx, 3, discover)
	proc := w.rec.process()
	clientID := rng.Int64N(math.MaxInt64-1) + 1
	var seq int64
	for ctx.Err() == nil {
		octx, cancel := context.WithTimeout(context.Background(), w.cfg.opTimeout)
		ro := op{Process: proc, Kind: kindCtrRead, Key: key, Call: w.rec.now()}
		resp, err := cl.Get(octx, []byte(key))
		cancel()
		ro.Return = w.rec.now()
		ro.Outcome, ro.Err = classifyRead(err), errString(err)
		if err == nil && resp.Found {
			ro.Value = decode(resp.Entry.Value)
		}
		w.rec.add(ro)
		if err != nil {
			continue
		}
		seq++
		id := kv.RequestID{ClientID: clientID, Sequence: seq}
		req := &kv.CASRequest{Key: []byte(key), Value: encode(ro.Value + 1), RequestID: &id}
		if ro.Value == 0 {
			req.ExpectedModIndex = thrift.Int64Ptr(0)
		} else {
			req.ExpectedValue = encode(ro.Value)
		}
		o := op{Process: proc, Kind: kindIncr, Key: key, Expect: ro.Value, Value: ro.Value + 1, Call: w.rec.now()}
		var first *kv.CASResponse
		unknown := false
		for attempt := 0; ; attempt++ {
			octx, cancel := context.WithTimeout(context.Background(), w.cfg.opTimeout)
			resp, err := cl.CAS(octx, req)
			cancel()
			o.Outcome, o.Err = classifyWrite(err), errString(err)
			if err == nil {
				first = resp
				break
			}
			// Once some attempt may have applied, only an answer settles it: a later attempt
			// that certainly failed says nothing about the earlier one.
			unknown = unknown || o.Outcome == outcomeUnknown
			if unknown {
				o.Outcome = outcomeUnknown
			}
			if !unknown || attempt >= 4 {
				break
			}
			// Unknown: resend with the same request id to learn the outcome.
		}
		o.Return = w.rec.now()
		if first != nil {
			o.Success = first.Succeeded
			if first.Succeeded {
				o.Index = first.Index
			}
		}
		w.rec.add(o)
		t := w.tally(key)
		switch {
		case o.Outcome == outcomeOK && o.Success:
			w.mu.Lock()
			t.Acked++
			w.mu.Unlock()
		case o.Outcome == outcomeUnknown:
			w.mu.Lock()
			t.Unknown++
			w.mu.Unlock()
			proc = w.rec.process()
		}
		if first != nil && rng.Float64() < w.cfg.resendProb {
			w.resend(cl, proc, key, req, first)
		}
	}
}

// resend sends an answered increment again with its request id: the answer
// must be the first one (same outcome, same index), never a second execution.
func (w *workload) resend(cl *client.Client, proc int, key string, req *kv.CASRequest, first *kv.CASResponse) {
	octx, cancel := context.WithTimeout(context.Background(), w.cfg.opTimeout)
	defer cancel()
	o := op{Process: proc, Kind: kindResend, Key: key, Call: w.rec.now()}
	resp, err := cl.CAS(octx, req)
	o.Return = w.rec.now()
	o.Outcome, o.Err = classifyWrite(err), errString(err)
	if err == nil {
		o.Success = resp.Succeeded
		if resp.Succeeded != first.Succeeded || resp.Index != first.Index {
			o.Err = fmt.Sprintf("resend answered succeeded=%v index=%d, first answer succeeded=%v index=%d",
				resp.Succeeded, resp.Index, first.Succeeded, first.Index)
			w.mu.Lock()
			w.tallies[key].Mismatch++
			w.mu.Unlock()
		}
	}
	w.rec.add(o)
}

// registerKeys returns every register key used so far.
func (w *workload) registerKeys() []string {
	var keys []string
	gens := w.regOps.Load()/w.cfg.opsPerGen + 1
	for g := int64(0); g < gens; g++ {
		for i := 0; i < w.cfg.keysPerGen; i++ {
			keys = append(keys, w.regKey(g, i))
		}
	}
	return keys
}

// finalReads reads, on every node through a client pinned to it, every
// register key (LINEARIZABLE, recorded for porcupine), the whole set and the
// counters. It returns the set members and counter values per node.
func (w *workload) finalReads(ctx context.Context, nodes []*kvnode) (map[string]map[string]bool, map[string]map[string]int64, error) {
	sets := map[string]map[string]bool{}
	counters := map[string]map[string]int64{}
	var errs []error
	for _, n := range nodes {
		cl := w.newClient([]string{n.thriftAddr()}, 0, 5, pinned)
		proc := w.rec.process()
		for _, key := range w.registerKeys() {
			o := op{Process: proc, Kind: kindFinal, Key: key, Call: w.rec.now(), Endpoint: n.id}
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cl.Get(octx, []byte(key))
			cancel()
			o.Return = w.rec.now()
			o.Outcome, o.Err = classifyRead(err), errString(err)
			if err != nil {
				errs = append(errs, fmt.Errorf("final read %s on %s: %w", key, n.id, err))
			} else {
				if resp.Found {
					o.Value = decode(resp.Entry.Value)
				}
				o.Node = resp.Info.NodeID
				if o.Node != n.id {
					errs = append(errs, fmt.Errorf("final read %s pinned to %s was served by %s", key, n.id, o.Node))
				}
			}
			w.rec.add(o)
		}
		members := map[string]bool{}
		var start []byte
		for {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := cl.Scan(octx, &kv.ScanRequest{Prefix: []byte(w.setPrefix()), StartKey: start, KeysOnly: thrift.BoolPtr(true)})
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("final scan on %s: %w", n.id, err))
				break
			}
			for _, e := range resp.Entries {
				members[string(e.Key)] = true
			}
			if resp.Continuation == nil {
				break
			}
			start = resp.Continuation
		}
		sets[n.id] = members
		vals := map[string]int64{}
		for i := 0; i < w.cfg.counterKeys; i++ {
			key := w.counterKey(i)
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cl.Get(octx, []byte(key))
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("final counter read %s on %s: %w", key, n.id, err))
				continue
			}
			if resp.Found {
				vals[key] = decode(resp.Entry.Value)
			} else {
				vals[key] = 0
			}
		}
		counters[n.id] = vals
	}
	return sets, counters, errors.Join(errs...)
}
