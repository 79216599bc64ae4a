package lease

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/fsm"
	"github.com/cubekv/cubekv/internal/testutil"
)

// fakeClock is a Clock moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// fakeTable is a Table with an applied index, and a Revoke that deletes
// from it (or fails as told).
type fakeTable struct {
	mu      sync.Mutex
	leases  map[uint64]fsm.Lease
	applied uint64
	revoked []uint64
	fail    error // returned by revoke instead of applying, when set
	block   chan struct{}
}

func newTable() *fakeTable { return &fakeTable{leases: map[uint64]fsm.Lease{}} }

func (t *fakeTable) grant(id uint64, ttl time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leases[id] = fsm.Lease{ID: id, TTL: ttl.Milliseconds()}
	t.applied = max(t.applied, id)
}

func (t *fakeTable) Lease(id uint64) (fsm.Lease, bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[id]
	return l, ok, t.applied
}

func (t *fakeTable) Leases(after uint64, limit int) ([]fsm.Lease, bool, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []fsm.Lease
	for _, l := range t.leases {
		if l.ID > after {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b fsm.Lease) int { return int(a.ID) - int(b.ID) })
	more := false
	if limit > 0 && len(out) > limit {
		out, more = out[:limit], true
	}
	return out, more, t.applied
}

func (t *fakeTable) revoke(ctx context.Context, id uint64) error {
	if t.block != nil {
		<-t.block
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail != nil {
		return t.fail
	}
	if _, ok := t.leases[id]; !ok {
		return &fsm.LeaseNotFoundError{ID: int64(id)}
	}
	delete(t.leases, id)
	t.revoked = append(t.revoked, id)
	t.applied++
	return nil
}

func (t *fakeTable) revokedIDs() []uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.revoked)
}

var errNotApplied = errors.New("not applied")

func newKeeper(t *testing.T, tab *fakeTable) (*Keeper, *fakeClock) {
	clock := &fakeClock{now: time.Unix(1000, 0)}
	k := New(Config{
		Table:   tab,
		Revoke:  tab.revoke,
		Unknown: func(err error) bool { return !errors.Is(err, errNotApplied) },
		Clock:   clock,
		Logger:  testutil.Logger(t, -4),
	})
	t.Cleanup(k.Stop)
	return k, clock
}

// expire runs Expire and waits until the revokes it started are answered.
func expire(k *Keeper) int {
	n := k.Expire()
	k.wg.Wait()
	return n
}

func TestKeeper_InactiveDoesNothing(t *testing.T) {
	tab := newTable()
	tab.grant(1, time.Second)
	k, clock := newKeeper(t, tab)
	if _, err := k.KeepAlive(1, clock.Now()); !errors.Is(err, ErrNotActive) {
		t.Fatalf("keep-alive before promote: %v", err)
	}
	clock.advance(time.Hour)
	if n := expire(k); n != 0 {
		t.Fatalf("inactive keeper revoked %d", n)
	}
}

func TestKeeper_ExpiresAtTTLNeverBefore(t *testing.T) {
	tab := newTable()
	tab.grant(1, 3*time.Second)
	tab.grant(2, 5*time.Second)
	k, clock := newKeeper(t, tab)
	k.Promote()
	clock.advance(3*time.Second - time.Millisecond)
	if n := expire(k); n != 0 {
		t.Fatalf("revoked %d before the TTL", n)
	}
	clock.advance(time.Millisecond)
	if n := expire(k); n != 1 || !slices.Equal(tab.revokedIDs(), []uint64{1}) {
		t.Fatalf("at the TTL: started %d, revoked %v", n, tab.revokedIDs())
	}
	if _, err := k.KeepAlive(1, clock.Now()); !errors.Is(err, fsm.ErrLeaseNotFound) {
		t.Fatalf("keep-alive of a revoked lease: %v", err)
	}
	clock.advance(2 * time.Second)
	expire(k)
	if !slices.Equal(tab.revokedIDs(), []uint64{1, 2}) || k.Len() != 0 {
		t.Fatalf("revoked %v, %d left", tab.revokedIDs(), k.Len())
	}
}

func TestKeeper_KeepAliveFromArrival(t *testing.T) {
	tab := newTable()
	tab.grant(1, 3*time.Second)
	k, clock := newKeeper(t, tab)
	k.Promote()
	clock.advance(2 * time.Second)
	t0 := clock.Now()
	clock.advance(500 * time.Millisecond) // the read index took this long
	ttl, err := k.KeepAlive(1, t0)
	if err != nil || ttl != 3*time.Second {
		t.Fatalf("keep-alive: %v %v", ttl, err)
	}
	st, _ := k.Info(1)
	if st.Remaining != 2500*time.Millisecond {
		t.Fatalf("remaining %v, want 2.5s (measured from arrival)", st.Remaining)
	}
	// An older keep-alive never shortens the deadline.
	if _, err := k.KeepAlive(1, t0.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	clock.advance(2500*time.Millisecond - time.Millisecond)
	if n := expire(k); n != 0 {
		t.Fatalf("revoked %d before t0 + TTL", n)
	}
	clock.advance(time.Millisecond)
	if n := expire(k); n != 1 {
		t.Fatalf("not revoked at t0 + TTL: %d", n)
	}
}

func TestKeeper_PromoteRestartsAtFullTTL(t *testing.T) {
	tab := newTable()
	tab.grant(1, 3*time.Second)
	k, clock := newKeeper(t, tab)
	k.Promote()
	clock.advance(2900 * time.Millisecond)
	k.Demote()
	clock.advance(time.Second) // an election
	k.Promote()
	if st, _ := k.Info(1); st.Remaining != 3*time.Second {
		t.Fatalf("remaining after promote %v", st.Remaining)
	}
	clock.advance(3*time.Second - time.Millisecond)
	if n := expire(k); n != 0 {
		t.Fatal("revoked before the new leader's full TTL")
	}
	clock.advance(time.Millisecond)
	if n := expire(k); n != 1 {
		t.Fatal("not revoked after the new leader's full TTL")
	}
}

func TestKeeper_NewLeasesAndClientRevokes(t *testing.T) {
	tab := newTable()
	k, clock := newKeeper(t, tab)
	k.Promote()
	clock.advance(time.Second)
	tab.grant(7, 2*time.Second) // granted while leading
	expire(k)                   // finds it: its countdown starts now
	if st, err := k.Info(7); err != nil || st.Remaining != 2*time.Second {
		t.Fatalf("new lease: %+v %v", st, err)
	}
	// A keep-alive before the Keeper has looked also finds it.
	tab.grant(9, time.Second)
	if _, err := k.KeepAlive(9, clock.Now()); err != nil {
		t.Fatal(err)
	}
	// A lease revoked by a client is forgotten without a revoke.
	tab.mu.Lock()
	delete(tab.leases, 9)
	tab.mu.Unlock()
	clock.advance(2 * time.Second)
	expire(k)
	if got := tab.revokedIDs(); !slices.Equal(got, []uint64{7}) || k.Len() != 0 {
		t.Fatalf("revoked %v, %d left", got, k.Len())
	}
}

func TestKeeper_FailedRevoke(t *testing.T) {
	tab := newTable()
	tab.grant(1, time.Second)
	tab.grant(2, time.Second)
	k, clock := newKeeper(t, tab)
	k.Promote()
	clock.advance(time.Second)

	// Not applied: the mark is cleared, a keep-alive saves the lease.
	tab.fail = fmt.Errorf("queue full: %w", errNotApplied)
	if n := expire(k); n != 2 {
		t.Fatalf("started %d", n)
	}
	if _, err := k.KeepAlive(1, clock.Now()); err != nil {
		t.Fatalf("keep-alive after a revoke that did not apply: %v", err)
	}
	// Unknown outcome: no keep-alive is acknowledged, and the revoke is
	// proposed again after RetryDelay.
	tab.fail = errors.New("timeout")
	if n := expire(k); n != 1 {
		t.Fatalf("started %d, want lease 2 only", n)
	}
	if _, err := k.KeepAlive(2, clock.Now()); !errors.Is(err, fsm.ErrLeaseNotFound) {
		t.Fatalf("keep-alive after an unknown revoke: %v", err)
	}
	if st, _ := k.Info(2); st.Remaining != -1 {
		t.Fatalf("remaining %v, want -1", st.Remaining)
	}
	if n := expire(k); n != 0 {
		t.Fatal("retried before RetryDelay")
	}
	// The retry is refused before reaching the log: the first proposal may
	// still apply, so keep-alives stay refused and the revoke is retried.
	clock.advance(time.Second) // lease 1's keep-alive runs out too
	tab.fail = fmt.Errorf("queue full: %w", errNotApplied)
	if n := expire(k); n != 2 {
		t.Fatalf("started %d, want leases 1 and 2", n)
	}
	if _, err := k.KeepAlive(2, clock.Now()); !errors.Is(err, fsm.ErrLeaseNotFound) {
		t.Fatalf("keep-alive after an unknown revoke whose retry did not apply: %v", err)
	}
	if st, _ := k.Info(2); st.Remaining != -1 {
		t.Fatalf("remaining %v, want -1", st.Remaining)
	}
	tab.fail = nil
	if n := expire(k); n != 1 {
		t.Fatalf("started %d, want lease 1 only before RetryDelay", n)
	}
	clock.advance(time.Second)
	if n := expire(k); n != 1 {
		t.Fatalf("started %d, want the retry of lease 2", n)
	}
	got := tab.revokedIDs()
	slices.Sort(got)
	if !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("revoked %v", got)
	}
}

func TestKeeper_ExpiringRefusesKeepAlive(t *testing.T) {
	tab := newTable()
	tab.grant(1, time.Second)
	tab.block = make(chan struct{})
	k, clock := newKeeper(t, tab)
	k.Promote()
	clock.advance(time.Second)
	if n := k.Expire(); n != 1 {
		t.Fatalf("started %d", n)
	}
	// The revoke is in flight: the decision is taken, no keep-alive counts.
	if _, err := k.KeepAlive(1, clock.Now()); !errors.Is(err, fsm.ErrLeaseNotFound) {
		t.Fatalf("keep-alive during the revoke: %v", err)
	}
	// A demotion meanwhile drops the revoke's answer.
	k.Demote()
	close(tab.block)
	k.wg.Wait()
	if k.Len() != 0 {
		t.Fatal("demoted keeper kept entries")
	}
}

func TestKeeper_BoundedWorkPerExpire(t *testing.T) {
	tab := newTable()
	for id := uint64(1); id <= 200; id++ {
		tab.grant(id, time.Second)
	}
	k, clock := newKeeper(t, tab)
	k.cfg.MaxRevokes = 64
	k.Promote()
	clock.advance(time.Second)
	for _, want := range []int{64, 64, 64, 8, 0} {
		if n := expire(k); n != want {
			t.Fatalf("started %d, want %d", n, want)
		}
	}
	if len(tab.revokedIDs()) != 200 {
		t.Fatalf("revoked %d", len(tab.revokedIDs()))
	}
}

func TestKeeper_WaitActive(t *testing.T) {
	tab := newTable()
	k, _ := newKeeper(t, tab)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := k.WaitActive(ctx); !errors.Is(err, ErrNotActive) {
		t.Fatalf("WaitActive on an inactive keeper: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- k.WaitActive(context.Background()) }()
	k.Promote()
	if err := testutil.Receive(t, 5*time.Second, "WaitActive", done); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkKeeperMemory measures the leader's in-memory countdowns for
// 10,000 leases (the Keeper's part of a lease's cost; the replicated part
// is fsm's BenchmarkLeaseMemory), against the empty Keeper in the same run.
func BenchmarkKeeperMemory(b *testing.B) {
	const n = 10000
	tab := newTable()
	for id := uint64(1); id <= n; id++ {
		tab.grant(id, 10*time.Second)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	var total float64
	for range b.N {
		before := heap()
		k := New(Config{Table: tab, Revoke: tab.revoke})
		k.Promote()
		total += float64(heap() - before)
		runtime.KeepAlive(k)
	}
	b.ReportMetric(total/float64(b.N), "keeper-bytes/10k")
}
