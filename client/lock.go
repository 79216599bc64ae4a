package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Locks and elections on leases.
//
// Lock(name) grants a lease, keeps it alive in the background, and creates
// the key "lock/"+name with a CAS that holds only when the key is absent
// (expected_mod_index 0), attached to the lease. Whoever creates it holds
// the lock until Unlock revokes the lease (deleting the key) or the lease
// ends because its keep-alives stopped. Waiters poll the key with backoff.
// Campaign does the same on "elect/"+name with a value the winner
// publishes.
//
// Fencing. No lease-based lock is safe on its own: a holder paused (GC, a
// stopped process, a slow disk) past its TTL keeps running as if it held
// the lock while another holder has it. Each acquisition therefore
// returns a fencing token: the lock key's create index, which grows with
// every acquisition. A resource the lock protects must remember the
// highest token it has accepted and refuse any request carrying a lower
// one. Without that check the lock gives no mutual exclusion across
// pauses; Jepsen found exactly this in etcd's locks (etcd 3.4.3).

// DefaultLockTTL is the TTL of a lock's lease when LockOptions.TTL is 0.
const DefaultLockTTL = 10 * time.Second

// LockOptions configure Lock and Campaign.
type LockOptions struct {
	// TTL is the lease's TTL: how long after its holder stops (crashes,
	// is partitioned away) the lock is freed. 0: DefaultLockTTL.
	TTL time.Duration
	// Value is stored in the key: the holder's identity for a lock, the
	// published value for an election. Empty: nothing.
	Value []byte
	// MaxPoll bounds the wait between two looks at a held lock. 0: 1s.
	MaxPoll time.Duration
}

// LockKey is the key Lock(name) creates.
func LockKey(name string) []byte { return []byte("lock/" + name) }

// ElectionKey is the key Campaign(name, ...) creates.
func ElectionKey(name string) []byte { return []byte("elect/" + name) }

// Lock is a held lock (or an election won).
type Lock struct {
	// Key is the lock key.
	Key []byte
	// Token is the fencing token: the key's create index. Protected
	// resources must refuse requests with a lower token than one they
	// accepted (see the package's lock notes).
	Token int64
	// LeaseID is the lease the key is attached to.
	LeaseID int64

	c      *Client
	cancel context.CancelFunc
	done   chan struct{} // closed when the keep-alive loop ends
	lost   chan struct{} // closed when the lease is lost
	once   sync.Once
	err    error // why the keep-alive loop ended; set before done closes
}

// Lock acquires lock name, waiting (polling with backoff) while another
// holds it, until ctx ends.
func (c *Client) Lock(ctx context.Context, name string, opts LockOptions) (*Lock, error) {
	return c.acquire(ctx, LockKey(name), opts)
}

// Campaign waits until this caller is elected leader of name, publishing
// value, until ctx ends. Resign (Unlock) steps down.
func (c *Client) Campaign(ctx context.Context, name string, value []byte, opts LockOptions) (*Lock, error) {
	opts.Value = value
	return c.acquire(ctx, ElectionKey(name), opts)
}

// ElectionLeader returns the current leader of election name: its value and
// fencing token, or found false when there is none.
func (c *Client) ElectionLeader(ctx context.Context, name string) (value []byte, token int64, found bool, err error) {
	r, err := c.Get(ctx, ElectionKey(name))
	if err != nil || !r.Found {
		return nil, 0, false, err
	}
	return r.Entry.Value, r.Entry.CreateIndex, true, nil
}

func (c *Client) acquire(ctx context.Context, key []byte, opts LockOptions) (*Lock, error) {
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultLockTTL
	}
	maxPoll := opts.MaxPoll
	if maxPoll <= 0 {
		maxPoll = time.Second
	}
	// The leader's countdown may start before Grant returns (a retry of
	// a grant whose reply was lost): count from before it was sent.
	sent := time.Now()
	g, err := c.Grant(ctx, ttl)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	kctx, cancel := context.WithCancel(context.Background())
	l := &Lock{Key: key, LeaseID: g.LeaseID, c: c, cancel: cancel, done: make(chan struct{}), lost: make(chan struct{})}
	go func() {
		l.err = c.KeepAliveLoopFrom(kctx, g.LeaseID, time.Duration(g.TTLMs)*time.Millisecond, sent, nil)
		if l.err != nil {
			close(l.lost)
		}
		close(l.done)
	}()
	value := opts.Value
	if value == nil {
		value = []byte{}
	}
	req := &kv.CASRequest{Key: key, ExpectedModIndex: new(int64), Value: value, LeaseID: &g.LeaseID}
	wait := 20 * time.Millisecond
	for {
		resp, err := c.CAS(ctx, req)
		var uo *UnknownOutcomeError
		switch {
		case errors.As(err, &uo) && ctx.Err() == nil:
			// Ask again with the same request id: the answer is the
			// first attempt's, if it applied.
			req.RequestID = &uo.RequestID
			continue
		case err != nil:
			l.release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("lock %s: %w", key, err)
		case resp.Succeeded:
			l.Token = resp.Current.CreateIndex
			select {
			case <-l.lost:
				// The CAS (or its retries) outlasted the lease.
				l.release(context.WithoutCancel(ctx))
				return nil, fmt.Errorf("lock %s: %w", key, l.err)
			default:
			}
			return l, nil
		}
		req.RequestID = nil
		select {
		case <-l.lost:
			l.release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("lock %s: while waiting: %w", key, l.err)
		case <-ctx.Done():
			l.release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("lock %s: %w", key, ctx.Err())
		case <-time.After(wait + rand.N(wait/2+1)):
		}
		wait = min(2*wait, maxPoll)
	}
}

// Lost is closed when the lock's lease may have ended or may end soon (a
// keep-alive found it gone, or none was acknowledged for nine tenths of a
// TTL: KeepAliveLoop's safety margin): the holder must stop acting as one.
// Err says why.
func (l *Lock) Lost() <-chan struct{} { return l.lost }

// Err is why the lock was lost, nil while it is held.
func (l *Lock) Err() error {
	select {
	case <-l.lost:
		return l.err
	default:
		return nil
	}
}

// Unlock releases the lock: it stops the keep-alives and revokes the
// lease, deleting the key. A lease already gone is not an error.
func (l *Lock) Unlock(ctx context.Context) error { return l.release(ctx) }

func (l *Lock) release(ctx context.Context) error {
	var err error
	l.once.Do(func() {
		l.cancel()
		<-l.done
		if _, rerr := l.c.Revoke(ctx, l.LeaseID); rerr != nil && !errors.Is(rerr, ErrLeaseNotFound) {
			err = fmt.Errorf("unlock %s: %w", l.Key, rerr)
		}
	})
	return err
}
