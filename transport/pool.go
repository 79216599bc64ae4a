package transport

import (
	"context"
	"errors"
	"sync"
)

// DefaultMaxIdlePerAddr is the number of idle connections a Pool keeps per address when NewPool is
// given 0 or less.
const DefaultMaxIdlePerAddr = 4

// ErrPoolClosed is returned by Pool.Get after Close.
var ErrPoolClosed = errors.New("connection pool closed")

// Pool keeps idle connections per address for reuse by concurrent callers. A caller takes a
// connection with Get, uses it alone, and gives it back with Put. Connections are dialled on demand;
// at most maxIdlePerAddr idle ones are kept per address, the rest are closed. Safe for concurrent use.
type Pool struct {
	cfg            DialConfig
	maxIdlePerAddr int

	// mu guards idle and closed.
	mu     sync.Mutex
	idle   map[string][]*Conn // per address, most recently returned last
	closed bool
}

// NewPool returns an empty pool dialling with cfg (nil for the defaults). maxIdlePerAddr <= 0 means
// DefaultMaxIdlePerAddr. It does no I/O.
func NewPool(cfg *DialConfig, maxIdlePerAddr int) *Pool {
	if maxIdlePerAddr <= 0 {
		maxIdlePerAddr = DefaultMaxIdlePerAddr
	}
	return &Pool{
		cfg:            cfg.withDefaults(),
		maxIdlePerAddr: maxIdlePerAddr,
		idle:           make(map[string][]*Conn),
	}
}

// Get returns an idle connection to addr that still looks alive, or dials a new one.
func (p *Pool) Get(ctx context.Context, addr string) (*Conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		conns := p.idle[addr]
		if len(conns) == 0 {
			p.mu.Unlock()
			break
		}
		c := conns[len(conns)-1]
		conns[len(conns)-1] = nil
		p.idle[addr] = conns[:len(conns)-1]
		p.mu.Unlock()
		if c.alive() {
			return c, nil
		}
		_ = c.Close()
	}
	return Dial(ctx, addr, &p.cfg)
}

// Put gives c back. When broken is true, c is marked broken by a failed call, the pool is closed or
// the address already has enough idle connections, c is closed instead of kept.
func (p *Pool) Put(c *Conn, broken bool) {
	if c == nil {
		return
	}
	if broken || c.broken || c.closed {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle[c.addr]) >= p.maxIdlePerAddr {
		p.mu.Unlock()
		_ = c.Close()
		return
	}
	p.idle[c.addr] = append(p.idle[c.addr], c)
	p.mu.Unlock()
}

// Do runs fn on a connection to addr taken from the pool, with Conn.Do's
// deadline and broken-connection rules, and gives the connection back (or
// closes it when the call broke it). fn makes exactly one call on one of
// the connection's clients. sent reports whether any byte of the request
// reached the socket; when no connection could be had, sent is false and
// err is the dial's error.
func (p *Pool) Do(ctx context.Context, addr string, fn func(ctx context.Context, c *Conn) error) (sent bool, err error) {
	c, err := p.Get(ctx, addr)
	if err != nil {
		return false, err
	}
	sent, err = c.Do(ctx, func(ctx context.Context) error { return fn(ctx, c) })
	p.Put(c, c.Broken())
	return sent, err
}

// Close closes every idle connection; connections in use are closed when they are Put back. It is
// idempotent.
func (p *Pool) Close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle = make(map[string][]*Conn)
	p.closed = true
	p.mu.Unlock()
	var errs []error
	for _, conns := range idle {
		for _, c := range conns {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Config returns the dial settings the pool's connections are made with, defaults filled in.
func (p *Pool) Config() DialConfig { return p.cfg }
