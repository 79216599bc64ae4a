package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/thrift/kv"
)

// TestClient_WriteOutlastsAnElection kills the leader and keeps the cluster
// without one for longer than the default backoff's first five retries take
// (about 1.5 s), as a measured election does (1.6-2.7 s). A write with a 5 s
// deadline must succeed once a new leader is up, applied once, with every
// attempt carrying the same request id.
func TestClient_WriteOutlastsAnElection(t *testing.T) {
	const election = 2500 * time.Millisecond
	cl := clienttest.NewCluster(t, "n1", "n2", "n3")
	n1, n2, n3 := cl.Server("n1"), cl.Server("n2"), cl.Server("n3")
	c := mustNewClient(t, []string{n1.Addr, n2.Addr, n3.Addr}, func(cfg *client.Config) {
		cfg.Backoff, cfg.MaxBackoff = 0, 0 // the defaults
	})
	mustPut(t, c, "before")

	// n1 dies: it takes no new connection, and the ones the client holds
	// fail every call.
	n1.SetHook(func(context.Context, clienttest.Call) error { return &kv.Unavailable{Reason: "shutting down"} })
	go n1.Stop()
	killed := time.Now()
	var once sync.Once
	for _, s := range []*clienttest.Server{n2, n3} {
		s.SetHook(func(ctx context.Context, call clienttest.Call) error {
			if call.Method != "put" {
				return nil
			}
			if time.Since(killed) < election {
				return &kv.NotLeader{} // no leader known: the election is on
			}
			once.Do(func() { cl.SetLeader("n2") })
			return nil
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, []byte("during"), []byte("v")); err != nil {
		t.Fatalf("put with a 5s deadline across a %v election failed after %v: %v", election, time.Since(killed).Round(time.Millisecond), err)
	}
	if n := n2.Applies("during"); n != 1 {
		t.Fatalf("new leader n2 applied the write %d times, want 1", n)
	}
	ids := append(writeIDs(n2.Calls(), "put"), writeIDs(n3.Calls(), "put")...)
	if len(ids) < 2 {
		t.Fatalf("%d attempts reached n2 and n3, want retries", len(ids))
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("retries carried request ids %v and %v, want one id", ids[0], id)
		}
	}
}

// TestClient_RetriesStopAtTheDeadline checks that retrying without a cap on
// the count still ends with the context's deadline, and with the last error.
func TestClient_RetriesStopAtTheDeadline(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error { return &kv.Unavailable{Reason: "no quorum"} })
	c := mustNewClient(t, []string{srv.Addr}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Get(ctx, []byte("k"))
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("get: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("get gave up after %v, want about the 300ms deadline", d)
	}
	if n := countMethod(srv.Calls(), "get"); n < 6 {
		t.Fatalf("server saw %d attempts in 300ms of 1-5ms backoff, want retries until the deadline", n)
	}
}

// TestClient_RetryTimeoutBoundsACallWithoutDeadline checks the bound on a
// context with no deadline.
func TestClient_RetryTimeoutBoundsACallWithoutDeadline(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error { return &kv.Unavailable{Reason: "no quorum"} })
	c := mustNewClient(t, []string{srv.Addr}, func(cfg *client.Config) { cfg.RetryTimeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := c.Get(context.Background(), []byte("k"))
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("get: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("get gave up after %v, want about the 200ms RetryTimeout", d)
	}
}
