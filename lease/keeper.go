package lease

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/logging"
)

// ErrNotActive is returned by KeepAlive and Info on a Keeper that is not
// promoted: this node does not (yet) count down leases.
var ErrNotActive = errors.New("lease keeper not active")

// Table is the replicated lease state the Keeper reads; *fsm.FSM
// implements it. Its methods must not block on the Keeper.
type Table interface {
	// Lease returns lease id, whether it exists, and the applied index.
	Lease(id uint64) (fsm.Lease, bool, uint64)
	// Leases returns up to limit (<= 0: all) leases with ids above after,
	// in ascending order, whether more remain, and the applied index.
	Leases(after uint64, limit int) ([]fsm.Lease, bool, uint64)
}

// Clock reads the time. Only differences between its readings are used,
// so a monotonic clock (time.Now's) is what it must be.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config configures a Keeper.
type Config struct {
	// Table is the replicated lease state. Required.
	Table Table
	// Revoke proposes LEASE_REVOKE for lease id and waits for its outcome:
	// nil (applied), an error matching fsm.ErrLeaseNotFound (the lease
	// was already gone), or another error. Required.
	Revoke func(ctx context.Context, id uint64) error
	// Unknown reports whether an error of Revoke leaves its outcome
	// unknown (the revoke may still apply). Nil: every error is unknown,
	// and a lease once marked expiring is never kept alive again.
	Unknown func(error) bool
	// Clock; nil: the system's monotonic clock.
	Clock Clock
	// MaxRevokes is the most revokes one Expire call starts. 0: 64.
	MaxRevokes int
	// RevokeTimeout bounds each revoke. 0: 5s.
	RevokeTimeout time.Duration
	// RetryDelay is how long after a revoke with an unknown outcome it is
	// proposed again. 0: 1s.
	RetryDelay time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// state is where a lease's countdown is.
type state uint8

const (
	counting state = iota // deadline not passed, or not yet acted on
	revoking              // a revoke is in flight
	retrying              // a revoke's outcome was unknown; proposed again at retryAt
)

// entry is one lease's countdown.
type entry struct {
	ttl      time.Duration
	deadline time.Time // counting: when it runs out; retrying: when to propose again
	state    state
	// unknown is set once a revoke's outcome was unknown: that proposal may
	// still apply, so the lease never counts down again this leadership
	// (entries are rebuilt by Promote, which resets it).
	unknown bool
}

// Status is a lease as the leader sees it.
type Status struct {
	fsm.Lease
	// Remaining is the time before the leader revokes the lease unless it
	// is kept alive; -1 once it has decided to revoke it.
	Remaining time.Duration
}

// Keeper counts down leases on the leader. See the package doc.
type Keeper struct {
	cfg    Config
	clock  Clock
	logger *slog.Logger

	mu       sync.Mutex
	active   bool
	epoch    uint64            // changes on every Promote and Demote
	synced   uint64            // leases with ids up to this were seen
	entries  map[uint64]*entry // by lease id
	due      dueHeap
	activeCh chan struct{} // closed and replaced when active changes

	wg sync.WaitGroup // revokes in flight
}

// New returns an inactive Keeper.
func New(cfg Config) *Keeper {
	if cfg.MaxRevokes <= 0 {
		cfg.MaxRevokes = 64
	}
	if cfg.RevokeTimeout <= 0 {
		cfg.RevokeTimeout = 5 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Unknown == nil {
		cfg.Unknown = func(error) bool { return true }
	}
	clock := cfg.Clock
	if clock == nil {
		clock = realClock{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Keeper{cfg: cfg, clock: clock, logger: logger.With("component", logging.ComponentLease), activeCh: make(chan struct{})}
}

// Promote starts counting down every lease at its full TTL from now. Call
// it when this node is leader and has applied an entry of its own term.
func (k *Keeper) Promote() {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.clock.Now()
	leases, _, applied := k.cfg.Table.Leases(0, 0)
	k.entries = make(map[uint64]*entry, len(leases))
	k.due = make(dueHeap, 0, len(leases))
	for _, l := range leases {
		k.add(l, now)
	}
	k.synced = applied
	k.active = true
	k.epoch++
	close(k.activeCh)
	k.activeCh = make(chan struct{})
	k.logger.Info("counting down leases", "count", len(leases), "raft_index", applied)
}

// Demote forgets every countdown: this node no longer leads.
func (k *Keeper) Demote() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.active {
		return
	}
	k.active = false
	k.epoch++
	k.entries = nil
	k.due = nil
	close(k.activeCh)
	k.activeCh = make(chan struct{})
	k.logger.Info("stopped counting down leases")
}

// Stop demotes the Keeper and waits for the revokes in flight.
func (k *Keeper) Stop() {
	k.Demote()
	k.wg.Wait()
}

// WaitActive returns once the Keeper is promoted, or ctx's error.
func (k *Keeper) WaitActive(ctx context.Context) error {
	for {
		k.mu.Lock()
		active, ch := k.active, k.activeCh
		k.mu.Unlock()
		if active {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNotActive, ctx.Err())
		}
	}
}

// add starts l's countdown at now + TTL unless it has one, and returns
// it. The caller holds mu.
func (k *Keeper) add(l fsm.Lease, now time.Time) *entry {
	if e := k.entries[l.ID]; e != nil {
		return e
	}
	ttl := time.Duration(l.TTL) * time.Millisecond
	e := &entry{ttl: ttl, deadline: now.Add(ttl)}
	k.entries[l.ID] = e
	heap.Push(&k.due, dueItem{at: e.deadline, id: l.ID})
	return e
}

// sync starts the countdown of leases granted since the last look. The
// caller holds mu.
func (k *Keeper) sync(now time.Time) {
	leases, _, applied := k.cfg.Table.Leases(k.synced, 0)
	for _, l := range leases {
		k.add(l, now)
	}
	if applied > k.synced {
		k.synced = applied
	}
}

// KeepAlive extends lease id to at least t0 + its TTL and returns the TTL.
// t0 is when the request arrived; the caller has since confirmed its
// leadership with a quorum and applied the read index (see the package
// doc). A lease that does not exist, or that the Keeper has decided to
// revoke, is a *fsm.LeaseNotFoundError.
func (k *Keeper) KeepAlive(id uint64, t0 time.Time) (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.active {
		return 0, ErrNotActive
	}
	l, ok, _ := k.cfg.Table.Lease(id)
	if !ok {
		return 0, &fsm.LeaseNotFoundError{ID: int64(id)}
	}
	e := k.add(l, k.clock.Now())
	if e.state != counting {
		return 0, &fsm.LeaseNotFoundError{ID: int64(id)}
	}
	if d := t0.Add(e.ttl); d.After(e.deadline) {
		e.deadline = d
	}
	return e.ttl, nil
}

// Info returns lease id as this leader sees it. The caller has applied a
// read index, as for KeepAlive.
func (k *Keeper) Info(id uint64) (Status, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.active {
		return Status{}, ErrNotActive
	}
	l, ok, _ := k.cfg.Table.Lease(id)
	if !ok {
		return Status{}, &fsm.LeaseNotFoundError{ID: int64(id)}
	}
	return k.status(l, k.clock.Now()), nil
}

// List returns up to limit (<= 0: all) leases with ids above after, and
// whether more remain.
func (k *Keeper) List(after uint64, limit int) ([]Status, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.active {
		return nil, false, ErrNotActive
	}
	leases, more, _ := k.cfg.Table.Leases(after, limit)
	now := k.clock.Now()
	out := make([]Status, len(leases))
	for i, l := range leases {
		out[i] = k.status(l, now)
	}
	return out, more, nil
}

// status is l with its remaining time. The caller holds mu.
func (k *Keeper) status(l fsm.Lease, now time.Time) Status {
	s := Status{Lease: l, Remaining: time.Duration(l.TTL) * time.Millisecond}
	if e := k.entries[l.ID]; e != nil {
		if e.state != counting {
			s.Remaining = -1
		} else {
			s.Remaining = max(e.deadline.Sub(now), 0)
		}
	}
	return s
}

// Expire starts a revoke for each lease past its deadline (at most
// Config.MaxRevokes), marking it expiring first, and returns how many it
// started. The node calls it on a short tick while it leads.
func (k *Keeper) Expire() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.active {
		return 0
	}
	now := k.clock.Now()
	k.sync(now)
	var ids []uint64
	for len(ids) < k.cfg.MaxRevokes && len(k.due) > 0 && !k.due[0].at.After(now) {
		it := heap.Pop(&k.due).(dueItem)
		e := k.entries[it.id]
		switch {
		case e == nil || e.state == revoking:
			continue // forgotten, or its revoke holds no heap item
		case e.deadline.After(now):
			heap.Push(&k.due, dueItem{at: e.deadline, id: it.id}) // kept alive meanwhile
			continue
		}
		if _, ok, _ := k.cfg.Table.Lease(it.id); !ok {
			delete(k.entries, it.id) // revoked by a client
			continue
		}
		e.state = revoking
		ids = append(ids, it.id)
	}
	epoch := k.epoch
	for _, id := range ids {
		k.wg.Add(1)
		go k.revoke(epoch, id)
	}
	return len(ids)
}

// revoke proposes the revoke of lease id and records its outcome, unless
// the Keeper was promoted or demoted meanwhile.
func (k *Keeper) revoke(epoch, id uint64) {
	defer k.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.RevokeTimeout)
	err := k.cfg.Revoke(ctx, id)
	cancel()
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.entries[id]
	if k.epoch != epoch || e == nil {
		return
	}
	switch {
	case err == nil || errors.Is(err, fsm.ErrLeaseNotFound):
		delete(k.entries, id)
		k.logger.Info("lease expired", "lease_id", id)
	case k.cfg.Unknown(err):
		// It may still apply: acknowledge no keep-alive, propose again.
		e.unknown = true
		e.state = retrying
		e.deadline = k.clock.Now().Add(k.cfg.RetryDelay)
		heap.Push(&k.due, dueItem{at: e.deadline, id: id})
		k.logger.Warn("lease revoke outcome unknown", "lease_id", id, "err", err)
	case e.unknown:
		// This proposal did not apply, but an earlier one of this
		// leadership may still: keep refusing keep-alives, propose again.
		e.state = retrying
		e.deadline = k.clock.Now().Add(k.cfg.RetryDelay)
		heap.Push(&k.due, dueItem{at: e.deadline, id: id})
		k.logger.Warn("lease revoke failed after an unknown outcome", "lease_id", id, "err", err)
	default:
		// Not applied: the lease lives on; a keep-alive may still save
		// it, or the next Expire revokes it.
		e.state = counting
		heap.Push(&k.due, dueItem{at: e.deadline, id: id})
		k.logger.Warn("lease revoke failed", "lease_id", id, "err", err)
	}
}

// Len returns the number of leases being counted down.
func (k *Keeper) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.entries)
}

// dueItem is a lease's deadline as it was when pushed; the entry's may be
// later.
type dueItem struct {
	at time.Time
	id uint64
}

// dueHeap is a min-heap of dueItems by time, then id.
type dueHeap []dueItem

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].id < h[j].id
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
