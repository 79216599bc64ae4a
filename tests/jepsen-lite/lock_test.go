package jepsenlite

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The lock scenario. Workers take the lock with client.Lock (a lease kept
// alive in the background, and a CAS that creates the lock key only when
// absent, attached to the lease) and hold it for two to three TTLs while
// the cluster is killed, paused and partitioned, writing their fencing
// token (the lock key's create index) to a register every third of a TTL.
// Each write is a transaction that accepts only a token at least the
// register's current one, and records whether the lock had reported its
// loss (Lock.Err) before the write was sent and by the time its answer
// came back. Some holders pause instead: their keep-alives stop for
// longer than the TTL, then they write once as if they still held the
// lock, as a process frozen by a GC pause or SIGSTOP would.
//
// The checker holds the lock to its promise: a lease never ends early, so
// while a holder's lock has not reported its loss no one else can hold
// it, and no one can have put a higher token in the register. A write by
// a holder that did not pause, refused by fencing although its lock had
// reported no loss by the answer, is a violation: another worker
// acquired the lock while this one validly held it (a lease expired early
// or the lock was granted twice). The checker also orders the accepted
// writes by the Raft index that applied them and fails on a token
// accepted after a higher one, and on two acquisitions with one token.
//
// The canary worker suppresses both halves of its lease: its keep-alives
// stop right after it acquires, and it ignores the loss signal, holding
// and writing for the full hold as if nothing had happened. Its writes are
// fenced, so the order check cannot see it; only the validity check can.

const (
	lockTTL = 1500 * time.Millisecond
	// lockPause is how long a pausing holder stays frozen: well past its
	// TTL, the leader's expiry tick and a waiter's longest poll, so another
	// worker takes the lock and writes meanwhile.
	lockPause = lockTTL + 2500*time.Millisecond
	// lockMaxPoll bounds a waiter's poll of the held lock.
	lockMaxPoll = 200 * time.Millisecond
	// lockWriteEvery is the gap between a holder's register writes.
	lockWriteEvery = lockTTL / 3
	lockName       = "jl"
	lockRegister   = "jl/lock/register"
)

// lockHold is how long a holder that does not pause keeps the lock: two
// to three TTLs, so holds span keep-alives and faults.
func lockHold(rng *rand.Rand) time.Duration {
	return 2*lockTTL + time.Duration(rng.Int64N(int64(lockTTL)+1))
}

// lockAcq is one acquisition of the lock.
type lockAcq struct {
	worker int
	token  int64
	at     int64 // recorder time
}

// lockWrite is one attempt to write a token to the register.
type lockWrite struct {
	worker int
	token  int64
	paused bool // the holder paused past its TTL before writing
	// lostBefore: the lock had reported its loss before the write was
	// sent; lostByReply: by the time its answer came back.
	lostBefore, lostByReply bool
	index                   int64 // the Raft index that decided it (known outcomes only)
	accepted                bool
	outcome                 outcome
	err                     error // the write's error, for the report
}

// validRefusal reports whether w is a write refused by fencing while its
// holder validly held the lock: the holder did not pause and its lock
// reported no loss until the answer came back.
func (w lockWrite) validRefusal() bool {
	return w.outcome == outcomeOK && !w.accepted && !w.paused && !w.lostBefore && !w.lostByReply
}

func (w lockWrite) String() string {
	return fmt.Sprintf("worker %d token %d at index %d (paused %v, lost before %v, lost by reply %v)",
		w.worker, w.token, w.index, w.paused, w.lostBefore, w.lostByReply)
}

// lockHistory is what the workers did.
type lockHistory struct {
	mu     sync.Mutex
	acqs   []lockAcq
	writes []lockWrite
}

// acquiredBy reports whether worker has acquired the lock yet.
func (h *lockHistory) acquiredBy(worker int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.acqs {
		if a.worker == worker {
			return true
		}
	}
	return false
}

// acquired records a and returns its number in the scenario, from 1.
func (h *lockHistory) acquired(a lockAcq) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.acqs = append(h.acqs, a)
	return len(h.acqs)
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

// lockReport is the checker's verdict on a lock history.
type lockReport struct {
	acqs, accepted, unknown int
	// refusedValid are writes refused while their holder validly held the
	// lock (must be none); refusedLost were refused after the lock
	// reported its loss (before the write or while it was in flight);
	// pausedRefused were refused after their holder paused.
	refusedValid               []lockWrite
	refusedLost, pausedRefused int
	// outOfOrder are accepted tokens lower than one accepted before them.
	outOfOrder []lockViolation
	// dupTokens were given to more than one acquisition.
	dupTokens []int64
}

// checkLock checks h: writes refused while valid, accepted tokens out of
// Raft-index order, and tokens given twice.
func checkLock(h *lockHistory) lockReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := lockReport{acqs: len(h.acqs)}
	var accepted []lockWrite
	for _, w := range h.writes {
		switch {
		case w.outcome != outcomeOK:
			r.unknown++
		case w.accepted:
			r.accepted++
			accepted = append(accepted, w)
		case w.paused:
			r.pausedRefused++
		case w.validRefusal():
			r.refusedValid = append(r.refusedValid, w)
		default:
			r.refusedLost++
		}
	}
	sort.Slice(accepted, func(i, j int) bool { return accepted[i].index < accepted[j].index })
	var top *lockWrite
	for i := range accepted {
		w := accepted[i]
		if top != nil && w.token < top.token {
			r.outOfOrder = append(r.outOfOrder, lockViolation{earlier: *top, later: w})
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
			r.dupTokens = append(r.dupTokens, tok)
		}
	}
	slices.Sort(r.dupTokens)
	return r
}

// table is the report as a one-row table.
func (r lockReport) table(name string) string {
	return fmt.Sprintf("\n%-12s %6s %9s %14s %16s %15s %8s %12s %10s\n%-12s %6d %9d %14d %16d %15d %8d %12d %10d",
		"scenario", "acqs", "accepted", "refused-valid", "refused-lost", "paused-refused", "unknown", "out-of-order", "dup-tokens",
		name, r.acqs, r.accepted, len(r.refusedValid), r.refusedLost, r.pausedRefused, r.unknown, len(r.outOfOrder), len(r.dupTokens))
}

// lockWorker runs one worker until ctx ends: wl makes the per-acquisition
// clients the lock runs on, cl writes the register. Both retry as clients
// do by default (until the request's deadline), as a lock's user would.
// Every pauseEvery-th acquisition of the scenario (counted across workers,
// so pauses happen however few acquisitions a loaded machine allows)
// pauses past its TTL; a canary suppresses its keep-alives and its loss
// signal on every acquisition.
func lockWorker(ctx context.Context, id int, wl *workload, endpoints []string, cl *client.Client, canary bool, pauseEvery int, rng *rand.Rand, rec *recorder, h *lockHistory) {
	opCtx := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 4*time.Second) }
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	write := func(w lockWrite, l *client.Lock) lockWrite {
		limit := binary.BigEndian.AppendUint64(nil, uint64(w.token+1))
		octx, cancel := opCtx()
		resp, err := cl.Txn(octx, &kv.TxnRequest{
			Compares: []*kv.Compare{{Key: []byte(lockRegister), Target: kv.CompareTarget_VALUE, Op: kv.CompareOpPtr(kv.CompareOp_LESS), Value: limit}},
			Success:  []*kv.Op{{Type: kv.OpType_PUT, Key: []byte(lockRegister), Value: registerValue(w.token, id)}},
		})
		cancel()
		w.lostByReply = w.lostBefore || (!canary && l.Err() != nil)
		w.outcome, w.err = classifyWrite(err), err
		if err == nil {
			w.index, w.accepted = resp.Index, resp.Succeeded
		}
		h.wrote(w)
		return w
	}
	for ctx.Err() == nil {
		// The lock runs on a client of its own: closing it is how a holder
		// stops its keep-alives without revoking the lease.
		lcl := wl.newClient(endpoints, id, 0, discover)
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		l, err := lcl.Lock(lctx, lockName, client.LockOptions{TTL: lockTTL, Value: []byte{byte(id)}, MaxPoll: lockMaxPoll})
		cancel()
		if err != nil {
			_ = lcl.Close()
			sleep(50 * time.Millisecond)
			continue
		}
		n := h.acquired(lockAcq{worker: id, token: l.Token, at: rec.now()})
		paused := !canary && pauseEvery > 0 && n%pauseEvery == 0
		switch {
		case paused:
			// One write while it holds the lock, then frozen: no
			// keep-alives for longer than the TTL, then the holder writes
			// once more as if it still held the lock.
			write(lockWrite{worker: id, token: l.Token, lostBefore: l.Err() != nil}, l)
			_ = lcl.Close()
			if !sleep(lockPause) {
				break
			}
			write(lockWrite{worker: id, token: l.Token, paused: true, lostBefore: l.Err() != nil}, l)
		case canary:
			// Keep-alives suppressed and the loss signal ignored: the
			// canary holds for the full hold, believing it still holds.
			_ = lcl.Close()
			end := time.Now().Add(lockHold(rng))
			for ctx.Err() == nil && time.Now().Before(end) {
				write(lockWrite{worker: id, token: l.Token}, l)
				sleep(lockWriteEvery)
			}
		default:
			end := time.Now().Add(lockHold(rng))
			for ctx.Err() == nil && time.Now().Before(end) {
				w := write(lockWrite{worker: id, token: l.Token, lostBefore: l.Err() != nil}, l)
				if w.lostBefore {
					break // the holder learned of its loss: one stale write, then it lets go
				}
				sleep(lockWriteEvery)
			}
		}
		rctx, cancel := opCtx()
		_ = l.Unlock(rctx)
		cancel()
		_ = lcl.Close()
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
	canaryID := -1
	if canary {
		canaryID = workers - 1
	}
	start := func(i int) {
		cl := wl.newClient(c.endpoints(), i, 0, discover)
		isCanary := i == canaryID
		wg.Add(1)
		go func() {
			defer wg.Done()
			lockWorker(ctx, i, wl, c.endpoints(), cl, isCanary, 2, rand.New(rand.NewPCG(seed, uint64(i))), rec, h)
		}()
	}
	if canary {
		// Polling waiters are not served in order: the canary starts
		// alone and holds the lock once before the others contend, so
		// every canary run exercises it however the race would go.
		start(canaryID)
		testutil.WaitFor(t, 30*time.Second, "the canary's first acquisition", func() bool { return h.acquiredBy(canaryID) })
	}
	for i := range workers {
		if i != canaryID {
			start(i)
		}
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

// TestJepsenLock: holders under kills, pauses and partitions are never
// refused while their lock still validly holds, and never have tokens
// accepted out of order.
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
	r := checkLock(h)
	t.Log(r.table("lock"))
	for _, w := range r.refusedValid {
		t.Errorf("lease ended early: a write by a holder whose lock had reported no loss was refused by fencing: %s", w)
	}
	for _, v := range r.outOfOrder {
		t.Errorf("fencing violated: %s", v)
	}
	if len(r.dupTokens) > 0 {
		t.Errorf("tokens given to more than one acquisition: %v", r.dupTokens)
	}
	if r.accepted == 0 {
		t.Fatal("no write was accepted: the scenario checked nothing")
	}
	if r.pausedRefused == 0 {
		for _, w := range h.writes {
			t.Logf("write: %s: %s, accepted %v, error %v", w, w.outcome, w.accepted, w.err)
		}
		for _, a := range h.acqs {
			t.Logf("acquired: worker %d token %d at %v", a.worker, a.token, time.Duration(a.at))
		}
		t.Error("no paused holder was refused: the scenario never made a stale holder write, so fencing was not exercised")
	}
}

// TestJepsenLock_CanaryCaught: a holder whose keep-alives are suppressed
// and which ignores its lock's loss signal keeps writing (fenced) after
// its lease ended and another worker took the lock. The order check cannot
// see it; the validity check must: refusals while it believed it held.
func TestJepsenLock_CanaryCaught(t *testing.T) {
	c := lockCluster(t)
	seed := baseSeed(t)
	t.Logf("lock canary: seed %d", seed)
	h := runLockScenario(t, c, seed, 4, true, nil, 25*time.Second)
	r := checkLock(h)
	t.Log(r.table("lock-canary"))
	for _, v := range r.outOfOrder {
		t.Errorf("fencing violated: %s", v)
	}
	if len(r.dupTokens) > 0 {
		t.Errorf("tokens given to more than one acquisition: %v", r.dupTokens)
	}
	const canary = 3
	var caught int
	for _, w := range r.refusedValid {
		if w.worker != canary {
			t.Errorf("lease ended early for a worker that is not the canary: %s", w)
			continue
		}
		caught++
	}
	if caught == 0 {
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
		t.Fatalf("canary not caught: a holder writing past its lease's end with the loss signal suppressed was never refused while it believed it held the lock (it acquired %d times and wrote %d times)", acq, wrote)
	}
	t.Logf("canary caught: %d of its writes refused while it believed it held the lock, e.g. %s", caught, r.refusedValid[0])
}

// TestCheckLock_FlagsRefusedWhileValid feeds the checker hand-made
// histories: a refusal while valid, refusals after loss or a pause, and
// tokens out of order.
func TestCheckLock_FlagsRefusedWhileValid(t *testing.T) {
	h := &lockHistory{
		acqs: []lockAcq{{worker: 0, token: 10}, {worker: 1, token: 20}, {worker: 2, token: 20}},
		writes: []lockWrite{
			{worker: 0, token: 10, index: 11, outcome: outcomeOK, accepted: true},
			{worker: 1, token: 20, index: 21, outcome: outcomeOK, accepted: true},
			{worker: 0, token: 10, index: 22, outcome: outcomeOK},                                      // refused while valid
			{worker: 0, token: 10, index: 23, outcome: outcomeOK, lostBefore: true, lostByReply: true}, // after loss
			{worker: 0, token: 10, index: 24, outcome: outcomeOK, lostByReply: true},                   // lost in flight
			{worker: 3, token: 5, index: 25, outcome: outcomeOK, paused: true, lostBefore: true},       // paused
			{worker: 3, token: 5, index: 26, outcome: outcomeOK, accepted: true},                       // out of order
			{worker: 3, token: 5, outcome: outcomeUnknown},
		},
	}
	r := checkLock(h)
	if len(r.refusedValid) != 1 || r.refusedValid[0].index != 22 {
		t.Errorf("refused while valid: got %v, want the write at index 22", r.refusedValid)
	}
	if r.refusedLost != 2 || r.pausedRefused != 1 || r.accepted != 3 || r.unknown != 1 || r.acqs != 3 {
		t.Errorf("counts: got %+v", r)
	}
	if len(r.outOfOrder) != 1 || r.outOfOrder[0].later.index != 26 {
		t.Errorf("out of order: got %v, want the write at index 26", r.outOfOrder)
	}
	if !slices.Equal(r.dupTokens, []int64{20}) {
		t.Errorf("duplicate tokens: got %v, want [20]", r.dupTokens)
	}
}
