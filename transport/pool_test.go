package transport_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// mustGet takes a connection to addr from p.
func mustGet(t *testing.T, p *transport.Pool, addr string) *transport.Conn {
	t.Helper()
	c, err := p.Get(context.Background(), addr)
	if err != nil {
		t.Fatalf("get %s: %v", addr, err)
	}
	return c
}

func mustNewPool(t *testing.T, maxIdle int) *transport.Pool {
	t.Helper()
	p := transport.NewPool(nil, maxIdle)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestPool_ReusesIdleConnection(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	p := mustNewPool(t, 2)

	c1 := mustGet(t, p, srv.Addr)
	if _, err := c1.Call(context.Background(), putCall("k")); err != nil {
		t.Fatalf("call: %v", err)
	}
	p.Put(c1, false)
	c2 := mustGet(t, p, srv.Addr)
	if c2 != c1 {
		t.Fatal("a healthy idle connection was not reused")
	}
	p.Put(c2, true)
	c3 := mustGet(t, p, srv.Addr)
	if c3 == c1 {
		t.Fatal("a connection put back as broken was reused")
	}
	if _, err := c3.Call(context.Background(), putCall("k")); err != nil {
		t.Fatalf("call on a fresh connection: %v", err)
	}
	p.Put(c3, false)
}

func TestPool_KeepsAtMostMaxIdle(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	p := mustNewPool(t, 2)

	conns := []*transport.Conn{mustGet(t, p, srv.Addr), mustGet(t, p, srv.Addr), mustGet(t, p, srv.Addr)}
	for _, c := range conns {
		p.Put(c, false)
	}
	// The third was closed for lack of room; the first two come back.
	kept := map[*transport.Conn]bool{mustGet(t, p, srv.Addr): true, mustGet(t, p, srv.Addr): true}
	for c := range kept {
		p.Put(c, false)
	}
	if !kept[conns[0]] || !kept[conns[1]] {
		t.Fatal("the pool did not keep the first two idle connections")
	}
	if _, err := conns[2].Call(context.Background(), putCall("k")); !errors.Is(err, transport.ErrConnClosed) {
		t.Fatalf("call on the surplus connection: got %v, want ErrConnClosed", err)
	}
}

func TestPool_DropsConnectionClosedByPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close() // a node that drops every connection, as after an idle timeout
		}
	})
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = ln.Close() })
	p := mustNewPool(t, 2)
	addr := ln.Addr().String()

	c1 := mustGet(t, p, addr)
	p.Put(c1, false)
	// Once the peer's close has arrived, Get notices and dials afresh.
	testutil.WaitFor(t, 5*time.Second, "a fresh connection after the peer closed", func() bool {
		c := mustGet(t, p, addr)
		defer p.Put(c, false)
		return c != c1
	})
}

func TestPool_Close(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	p := transport.NewPool(nil, 0)
	idle := mustGet(t, p, srv.Addr)
	busy := mustGet(t, p, srv.Addr)
	p.Put(idle, false)

	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := p.Get(context.Background(), srv.Addr); !errors.Is(err, transport.ErrPoolClosed) {
		t.Fatalf("get after close: got %v, want ErrPoolClosed", err)
	}
	if _, err := idle.Call(context.Background(), putCall("k")); !errors.Is(err, transport.ErrConnClosed) {
		t.Fatalf("idle connection after close: got %v, want ErrConnClosed", err)
	}
	p.Put(busy, false)
	if _, err := busy.Call(context.Background(), putCall("k")); !errors.Is(err, transport.ErrConnClosed) {
		t.Fatalf("connection put back after close: got %v, want ErrConnClosed", err)
	}
}

func TestPool_ConcurrentUse(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	p := mustNewPool(t, 4)
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				c, err := p.Get(context.Background(), srv.Addr)
				if err != nil {
					errs <- err
					return
				}
				_, err = c.Call(context.Background(), putCall("k"))
				p.Put(c, c.Broken())
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent call: %v", err)
	}
	if n := srv.Applies("k"); n != 160 {
		t.Fatalf("server applied %d puts, want 160", n)
	}
}

func TestPool_DoGivesTheConnectionBackUnlessTheCallBrokeIt(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	p := mustNewPool(t, 2)
	var used []*transport.Conn
	do := func(ctx context.Context) (bool, error) {
		return p.Do(ctx, srv.Addr, func(ctx context.Context, c *transport.Conn) error {
			used = append(used, c)
			return putCall("k")(ctx, c.KV)
		})
	}
	if sent, err := do(context.Background()); err != nil || !sent {
		t.Fatalf("first do: sent=%v err=%v", sent, err)
	}
	// A declared exception leaves the connection usable.
	srv.SetHook(func(context.Context, clienttest.Call) error { return &kv.Unavailable{Reason: "no quorum"} })
	var un *kv.Unavailable
	if _, err := do(context.Background()); !errors.As(err, &un) {
		t.Fatalf("do answered Unavailable: got %v", err)
	}
	// A call that times out breaks it.
	hang(srv)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if sent, err := do(ctx); err == nil || !sent {
		t.Fatalf("do that timed out: sent=%v err=%v, want sent and an error", sent, err)
	}
	srv.SetHook(nil)
	if _, err := do(context.Background()); err != nil {
		t.Fatalf("do after a broken call: %v", err)
	}
	if len(used) != 4 || used[1] != used[0] || used[2] != used[0] || used[3] == used[0] {
		t.Fatalf("connections used %p, want the first reused twice and a fresh one after the broken call", used)
	}
	if n := srv.Applies("k"); n != 2 {
		t.Fatalf("server applied %d puts, want 2", n)
	}
}

func TestPool_DoSendsNothingWithoutAConnection(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	p := transport.NewPool(nil, 2)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	called := false
	sent, err := p.Do(context.Background(), srv.Addr, func(context.Context, *transport.Conn) error {
		called = true
		return nil
	})
	if !errors.Is(err, transport.ErrPoolClosed) || sent || called {
		t.Fatalf("do on a closed pool: sent=%v err=%v called=%v, want ErrPoolClosed, nothing sent and fn not called", sent, err, called)
	}
}
