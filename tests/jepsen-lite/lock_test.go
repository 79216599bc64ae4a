package jepsenlite

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The lock scenario. Workers take a lease-based lock (a lease, a CAS that
// creates the lock key only when absent, attached to the lease, as
// client.Lock does), write their fencing token (the lock key's create
// index) to a register, and release the lock. Some holders pause while
// holding it: their keep-alives stop for longer than the TTL, then they
// carry on as if they still held it, as a process frozen by a GC pause or
// SIGSTOP would. A fenced worker writes with a transaction that accepts
// only a token at least the register's current one; the canary writes
// without that check. Meanwhile the cluster is killed, paused and
// partitioned.
//
// The checker orders the accepted register writes by the Raft index that
// applied them and finds every pair whose tokens were accepted out of
// order (a later write with a smaller token): with fencing there must be
// none, and the canary must be caught. It also checks that no two
// acquisitions got the same token.

const (
	lockTTL = 1500 * time.Millisecond
	// lockPause is how long a pausing holder stays frozen: well past its
	// TTL, the leader's expiry tick and a waiter's longest poll, so another
	// worker takes the lock and writes meanwhile.
	lockPause    = lockTTL + 2500*time.Millisecond
	lockKey      = "jl/lock/key"
	lockRegister = "jl/lock/register"
)

// lockAcq is one acquisition of the lock.
type lockAcq struct {
	worker int
	token  int64
	at     int64 // recorder time
}

// lockWrite is one attempt to write a token to the register.
type lockWrite struct {
	worker   int
	token    int64
	paused   bool  // the holder paused past its TTL before writing
	index    int64 // the Raft index that decided it (known outcomes only)
	accepted bool
	outcome  outcome
}

// lockHistory is what the workers did.
type lockHistory struct {
	mu     sync.Mutex
	acqs   []lockAcq
	writes []lockWrite
}

func (h *lockHistory) acquired(a lockAcq) {
	h.mu.Lock()
	h.acqs = append(h.acqs, a)
	h.mu.Unlock()
}

func (h *lockHistory) wrote(w lockWrite) {
	h.mu.Lock()
	h.writes = append(h.writes, w)
	h.mu.Unlock()
}

// registerValue is a token as the register holds it: 8 bytes big-endian
// (so bytewise order is numeric order) and the writer's id.
func registerValue(token int64, worker int) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(token)), byte(worker))
}

// lockViolation is two accepted writes whose tokens are out of order.
type lockViolation struct {
	earlier, later lockWrite
}

func (v lockViolation) String() string {
	return fmt.Sprintf("token %d (worker %d) accepted at index %d after token %d (worker %d) at index %d",
		v.later.token, v.later.worker, v.later.index, v.earlier.token, v.earlier.worker, v.earlier.index)
}

// checkLock returns every accepted write whose token is lower than one
// accepted before it (by Raft index), each paired with the highest token
// accepted before it, and the tokens given to more than one acquisition.
func checkLock(h *lockHistory) (violations []lockViolation, dupTokens []int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var accepted []lockWrite
	for _, w := range h.writes {
		if w.outcome == outcomeOK && w.accepted {
			accepted = append(accepted, w)
		}
	}
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].index < accepted[j].index })
	var top *lockWrite
	for i := range accepted {
		w := accepted[i]
		if top != nil && w.token < top.token {
			violations = append(violations, lockViolation{earlier: *top, later: w})
		}
		if top == nil || w.token > top.token {
			top = &accepted[i]
		}
	}
	seen := map[int64]int{}
	for _, a := range h.acqs {
		seen[a.token]++
	}
	for tok, n := range seen {
		if n > 1 {
			dupTokens = append(dupTokens, tok)
		}
	}
	slices.Sort(dupTokens)
	return violations, dupTokens
}

// lockWorker runs one worker until ctx ends. fenced chooses the register
// write; pauseProb is the chance a holder pauses past its TTL.
func lockWorker(ctx context.Context, id int, cl *client.Client, fenced bool, pauseProb float64, rng *rand.Rand, rec *recorder, h *lockHistory) {
	opCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 4*time.Second) }
	backoff := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d + rand.N(d/2+1)):
			return true
		}
	}
	for ctx.Err() == nil {
		octx, cancel := opCtx()
		granted := time.Now()
		g, err := cl.Grant(octx, lockTTL)
		cancel()
		if err != nil {
			backoff(50 * time.Millisecond)
			continue
		}
		kactx, stopKA := context.WithCancel(ctx)
		lost := make(chan struct{})
		go func() {
			if cl.KeepAliveLoopFrom(kactx, g.LeaseID, lockTTL, granted, nil) != nil {
				close(lost)
			}
		}()
		release := func() {
			stopKA()
			rctx, cancel := opCtx()
			_, _ = cl.Revoke(rctx, g.LeaseID)
			cancel()
		}
		// Acquire: create the lock key if absent, attached to the lease.
		req := &kv.CASRequest{Key: []byte(lockKey), ExpectedModIndex: new(int64), Value: []byte{byte(id)}, LeaseID: &g.LeaseID}
		var token int64
		wait := 20 * time.Millisecond
	acquire:
		for ctx.Err() == nil {
			octx, cancel := opCtx()
			resp, err := cl.CAS(octx, req)
			cancel()
			var uo *client.UnknownOutcomeError
			switch {
			case errors.As(err, &uo):
				req.RequestID = &uo.RequestID // learn the outcome with the same id
				continue
			case err == nil && resp.Succeeded:
				token = resp.Current.CreateIndex
				break acquire
			case errors.Is(err, client.ErrLeaseNotFound):
				break acquire
			}
			req.RequestID = nil
			select {
			case <-lost:
				break acquire
			default:
			}
			if !backoff(wait) {
				break
			}
			wait = min(2*wait, 300*time.Millisecond)
		}
		if token == 0 {
			release()
			continue
		}
		h.acquired(lockAcq{worker: id, token: token, at: rec.now()})
		paused := rng.Float64() < pauseProb
		if paused {
			// Frozen: no keep-alives for longer than the TTL, then the
			// holder carries on as if it still held the lock.
			stopKA()
			if !backoff(lockPause) {
				return
			}
		}
		w := lockWrite{worker: id, token: token, paused: paused}
		octx, cancel = opCtx()
		if fenced {
			limit := binary.BigEndian.AppendUint64(nil, uint64(token+1))
			resp, err := cl.Txn(octx, &kv.TxnRequest{
				Compares: []*kv.Compare{{Key: []byte(lockRegister), Target: kv.CompareTarget_VALUE, Op: kv.CompareOpPtr(kv.CompareOp_LESS), Value: limit}},
				Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte(lockRegister), Value: registerValue(token, id)}},
			})
			w.outcome = classifyWrite(err)
			if err == nil {
				w.index, w.accepted = resp.Index, resp.Succeeded
			}
		} else {
			resp, err := cl.Put(octx, []byte(lockRegister), registerValue(token, id))
			w.outcome = classifyWrite(err)
			if err == nil {
				w.index, w.accepted = resp.Index, true
			}
		}
		cancel()
		h.wrote(w)
		release()
	}
}

// runLockScenario runs the workers (the last one the canary when canary
// is set) for d, injecting the nemeses in turn, and returns the history.
func runLockScenario(t *testing.T, c *cluster, seed uint64, workers int, canary bool, nemeses []Nemesis, d time.Duration) *lockHistory {
	t.Helper()
	rec := newRecorder()
	wl := newWorkload(defaultWorkload(), rec, "jl/lock", c.endpoints(), seed)
	defer wl.close()
	setup := wl.newClient(c.endpoints(), 0, -1, discover)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if _, err := setup.Put(sctx, []byte(lockRegister), registerValue(0, 0xff)); err != nil {
		t.Fatalf("initialise the register: %v", err)
	}
	cancel()
	h := &lockHistory{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range workers {
		cl := wl.newClient(c.endpoints(), i, -1, discover)
		isCanary := canary && i == workers-1
		pause := 0.3
		if isCanary {
			pause = 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lockWorker(ctx, i, cl, !isCanary, pause, rand.New(rand.NewPCG(seed, uint64(i))), rec, h)
		}()
	}
	end := time.Now().Add(d)
	rng := rand.New(rand.NewPCG(seed, 0x6c6f636b))
	for i := 0; len(nemeses) > 0 && time.Until(end) > 8*time.Second; i++ {
		waitFor(2 * time.Second)
		nem := nemeses[i%len(nemeses)]
		ictx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := nem.Inject(ictx)
		cancel()
		if err != nil {
			t.Logf("inject %s: %v", nem.Name(), err)
			continue
		}
		t.Logf("injected %s at %.1fs", nem.Name(), time.Duration(rec.now()).Seconds())
		waitFor(time.Duration(2000+rng.IntN(2000)) * time.Millisecond)
		hctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := nem.Heal(hctx); err != nil {
			t.Errorf("heal %s: %v", nem.Name(), err)
		}
		cancel()
	}
	if err := healAll(c); err != nil {
		t.Errorf("heal all: %v", err)
	}
	waitFor(time.Until(end))
	stop()
	wg.Wait()
	return h
}

// waitFor waits d: the scenario's schedule, not a condition.
func waitFor(d time.Duration) {
	if d > 0 {
		<-time.After(d)
	}
}

func lockCluster(t *testing.T) *cluster {
	t.Helper()
	requireNetns(t)
	b := mustBinaries(t)
	nw := newNetwork(t)
	c := startCluster(t, nw, t.TempDir(), clusterOpts{size: 3, bin: b.normal, extra: []string{"--min-lease-ttl", "500ms"}})
	c.mustWaitLeader(t, 10*time.Second)
	return c
}

func summarize(h *lockHistory) (acqs, accepted, refused, pausedRefused, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range h.writes {
		switch {
		case w.outcome != outcomeOK:
			unknown++
		case w.accepted:
			accepted++
		default:
			refused++
			if w.paused {
				pausedRefused++
			}
		}
	}
	return len(h.acqs), accepted, refused, pausedRefused, unknown
}

// TestJepsenLock: fenced workers under kills, pauses and partitions never
// have tokens accepted out of order.
func TestJepsenLock(t *testing.T) {
	c := lockCluster(t)
	seed := baseSeed(t)
	t.Logf("lock scenario: seed %d (rerun with -jepsen.seed=%d -run TestJepsenLock$)", seed, seed)
	env := &nemesisEnv{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d))}
	nemeses := []Nemesis{
		&killNemesis{env: env, mode: "leader"},
		&pauseNemesis{env: env, mode: "leader"},
		&partitionNemesis{env: env, mode: "isolate-leader"},
	}
	h := runLockScenario(t, c, seed, 4, false, nemeses, 30*time.Second)
	acqs, accepted, refused, pausedRefused, unknown := summarize(h)
	t.Logf("lock: %d acquisitions, %d writes accepted, %d refused by fencing (%d by holders that had paused), %d unknown",
		acqs, accepted, refused, pausedRefused, unknown)
	violations, dups := checkLock(h)
	for _, v := range violations {
		t.Errorf("fencing violated: %s", v)
	}
	if len(dups) > 0 {
		t.Errorf("tokens given to more than one acquisition: %v", dups)
	}
	if accepted == 0 {
		t.Fatal("no write was accepted: the scenario checked nothing")
	}
	if pausedRefused == 0 {
		t.Error("no paused holder was refused: the scenario never made a stale holder write, so fencing was not exercised")
	}
}

// TestJepsenLock_CanaryCaught: a worker that writes without the fencing
// check, pausing past its TTL while holding the lock, must be caught: a
// write of its own accepted after a higher token.
func TestJepsenLock_CanaryCaught(t *testing.T) {
	c := lockCluster(t)
	seed := baseSeed(t)
	t.Logf("lock canary: seed %d", seed)
	h := runLockScenario(t, c, seed, 4, true, nil, 25*time.Second)
	acqs, accepted, refused, _, unknown := summarize(h)
	violations, dups := checkLock(h)
	t.Logf("lock canary: %d acquisitions, %d writes accepted, %d refused, %d unknown, %d violations",
		acqs, accepted, refused, unknown, len(violations))
	if len(dups) > 0 {
		t.Errorf("tokens given to more than one acquisition: %v", dups)
	}
	// The canary is caught when one of its own writes is accepted after a
	// higher token. (Once it has put a low token in the register, fenced
	// writes with tokens between the two are accepted too: the checker
	// reports those pairs as well, but they follow from the canary's.)
	canary := 3
	var caught []lockViolation
	for _, v := range violations {
		if v.later.worker == canary {
			caught = append(caught, v)
		}
	}
	if len(caught) == 0 {
		var acq, wrote int
		for _, a := range h.acqs {
			if a.worker == canary {
				acq++
			}
		}
		for _, w := range h.writes {
			if w.worker == canary && w.outcome == outcomeOK {
				wrote++
			}
		}
		t.Fatalf("canary not caught: a holder writing without fencing after pausing past its TTL was never accepted out of order (the canary acquired %d times and wrote %d times; %d other violations)", acq, wrote, len(violations))
	}
	t.Logf("canary caught %d times, e.g. %s", len(caught), caught[0])
}
