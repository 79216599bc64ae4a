package transport_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client/clienttest"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// mustDial dials addr with cfg and closes the connection when the test ends.
func mustDial(t *testing.T, addr string, cfg *transport.DialConfig) *transport.Conn {
	t.Helper()
	c, err := transport.Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func putCall(key string) func(ctx context.Context, kvc *kv.KVClient) error {
	return func(ctx context.Context, kvc *kv.KVClient) error {
		_, err := kvc.Put(ctx, &kv.PutRequest{Key: []byte(key), Value: []byte("v")})
		return err
	}
}

// hang makes every call of srv block until the client goes away.
func hang(srv *clienttest.Server) {
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		<-ctx.Done()
		return ctx.Err()
	})
}

func TestDial_CallRoundTrip(t *testing.T) {
	for _, proto := range []string{"", transport.ProtocolCompact} {
		t.Run("protocol="+proto, func(t *testing.T) {
			if proto == transport.ProtocolCompact {
				// The fake speaks binary only; a compact client must fail cleanly, not hang.
				srv := clienttest.NewServer(t, "n1")
				c := mustDial(t, srv.Addr, &transport.DialConfig{Protocol: proto, RequestTimeout: time.Second})
				sent, err := c.Call(context.Background(), putCall("k"))
				if err == nil || !sent || !c.Broken() {
					t.Fatalf("compact call against a binary server: sent=%v err=%v broken=%v", sent, err, c.Broken())
				}
				return
			}
			srv := clienttest.NewServer(t, "n1")
			c := mustDial(t, srv.Addr, nil)
			if c.Addr() != srv.Addr {
				t.Fatalf("addr %q, want %q", c.Addr(), srv.Addr)
			}
			for i := range 3 {
				sent, err := c.Call(context.Background(), putCall("k"))
				if err != nil || !sent {
					t.Fatalf("call %d: sent=%v err=%v", i, sent, err)
				}
			}
			if n := srv.Applies("k"); n != 3 {
				t.Fatalf("server applied %d puts, want 3", n)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second close: %v", err)
			}
			if _, err := c.Call(context.Background(), putCall("k")); !errors.Is(err, transport.ErrConnClosed) {
				t.Fatalf("call after close: got %v, want ErrConnClosed", err)
			}
		})
	}
}

func TestDial_UnknownProtocol(t *testing.T) {
	_, err := transport.Dial(context.Background(), "127.0.0.1:1", &transport.DialConfig{Protocol: "json"})
	if !errors.Is(err, transport.ErrUnknownProtocol) {
		t.Fatalf("dial: got %v, want ErrUnknownProtocol", err)
	}
}

func TestDial_Refused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if _, err := transport.Dial(context.Background(), addr, nil); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}

func TestConn_DeclaredExceptionKeepsConnection(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	srv.SetHook(func(ctx context.Context, c clienttest.Call) error {
		if string(c.Key) == "redirect" {
			return &kv.NotLeader{LeaderAddr: new("10.0.0.1:9090")}
		}
		return nil
	})
	c := mustDial(t, srv.Addr, nil)

	_, err := c.Call(context.Background(), putCall("redirect"))
	var nl *kv.NotLeader
	if !errors.As(err, &nl) || nl.GetLeaderAddr() != "10.0.0.1:9090" {
		t.Fatalf("call: got %v, want *kv.NotLeader naming 10.0.0.1:9090", err)
	}
	if c.Broken() {
		t.Fatal("a declared exception marked the connection broken")
	}
	if _, err := c.Call(context.Background(), putCall("k")); err != nil {
		t.Fatalf("call after the exception: %v", err)
	}
}

func TestConn_CallHonoursContextDeadline(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	hang(srv)
	c := mustDial(t, srv.Addr, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	sent, err := c.Call(ctx, putCall("k"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call: got %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("call returned after %v, deadline was 100ms", took)
	}
	if !sent || !c.Broken() {
		t.Fatalf("sent=%v broken=%v, want both true", sent, c.Broken())
	}
}

func TestConn_CallHonoursRequestTimeout(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	hang(srv)
	c := mustDial(t, srv.Addr, &transport.DialConfig{RequestTimeout: 100 * time.Millisecond})

	start := time.Now()
	sent, err := c.Call(context.Background(), putCall("k"))
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call: got %v, want a socket timeout (the context has no deadline)", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("call returned after %v, request timeout was 100ms", took)
	}
	if !sent || !c.Broken() {
		t.Fatalf("sent=%v broken=%v, want both true", sent, c.Broken())
	}
}

func TestConn_CallInterruptedByCancel(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	hang(srv)
	c := mustDial(t, srv.Addr, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, putCall("k"))
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "the call to reach the server", func() bool { return len(srv.Calls()) == 1 })
	cancel()
	if err := testutil.Receive(t, 5*time.Second, "the call interrupted by cancel", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("call: got %v, want context.Canceled", err)
	}
}

func TestConn_NothingSentWhenContextDone(t *testing.T) {
	srv := clienttest.NewServer(t, "n1")
	c := mustDial(t, srv.Addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sent, err := c.Call(ctx, putCall("k"))
	if !errors.Is(err, context.Canceled) || sent {
		t.Fatalf("call with a done context: sent=%v err=%v, want nothing sent and context.Canceled", sent, err)
	}
	if len(srv.Calls()) != 0 {
		t.Fatal("server saw a call")
	}
}
