package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// errNotImplemented is what srvTestHandler answers for the methods these tests do not use.
var errNotImplemented = errors.New("not implemented")

// srvTestHandler is a kv.KV for the server tests. Put with key "panic" panics, key "fail" returns a
// plain error; Get blocks until its context ends (after signalling getEntered).
type srvTestHandler struct {
	puts       atomic.Int64
	getEntered chan struct{}
	getDone    chan struct{}
}

var _ kv.KV = (*srvTestHandler)(nil)

func newSrvTestHandler() *srvTestHandler {
	return &srvTestHandler{getEntered: make(chan struct{}, 16), getDone: make(chan struct{}, 16)}
}

func (h *srvTestHandler) Get(ctx context.Context, _ *kv.GetRequest) (*kv.GetResponse, error) {
	h.getEntered <- struct{}{}
	<-ctx.Done()
	h.getDone <- struct{}{}
	return nil, ctx.Err()
}

func (h *srvTestHandler) Put(_ context.Context, req *kv.PutRequest) (*kv.PutResponse, error) {
	switch string(req.Key) {
	case "panic":
		panic("handler panic")
	case "fail":
		return nil, errors.New("handler failed")
	}
	n := h.puts.Add(1)
	return &kv.PutResponse{Index: 100 + n, CreateIndex: 100 + n}, nil
}

func (h *srvTestHandler) DeleteKey(context.Context, *kv.DeleteRequest) (*kv.DeleteResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) Cas(context.Context, *kv.CASRequest) (*kv.CASResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) Scan(context.Context, *kv.ScanRequest) (*kv.ScanResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) Txn(context.Context, *kv.TxnRequest) (*kv.TxnResponse, error) {
	return nil, errNotImplemented
}

func (h *srvTestHandler) Status(context.Context) (*kv.StatusResponse, error) {
	return &kv.StatusResponse{NodeID: "node-1", Role: kv.Role_LEADER, Term: 3, Engine: "btree"}, nil
}

func (h *srvTestHandler) Watch(context.Context, *kv.WatchRequest) (*kv.WatchResponse, error) {
	return nil, errNotImplemented
}

func testSlog(t testing.TB) *slog.Logger {
	return testutil.Logger(t, slog.LevelDebug)
}

// testServer is a running Server with the result of its Serve call.
type testServer struct {
	*Server
	handler *srvTestHandler
	addr    string
	served  chan error
}

// mustStartKVServer starts a server for a srvTestHandler on 127.0.0.1:0; edit adjusts the config.
// The server is closed in t.Cleanup.
func mustStartKVServer(t *testing.T, edit func(*ServerConfig)) *testServer {
	t.Helper()
	cfg := &ServerConfig{Addr: "127.0.0.1:0"}
	if edit != nil {
		edit(cfg)
	}
	h := newSrvTestHandler()
	s, err := NewServer(cfg, kv.NewKVProcessor(h), testSlog(t))
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ts := &testServer{Server: s, handler: h, addr: s.Addr().String(), served: make(chan error, 1)}
	go func() { ts.served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return ts
}

// testKVClient is a generated client over its own connection.
type testKVClient struct {
	*kv.KVClient
	trans thrift.TTransport
}

// mustDialKV opens a client speaking transport and protocol to addr, closed in t.Cleanup.
func mustDialKV(t *testing.T, addr, transport, protocol string) *testKVClient {
	t.Helper()
	cfg := TConfiguration(0, 2*time.Second, 5*time.Second)
	sock := thrift.NewTSocketConf(addr, cfg)
	if err := sock.Open(); err != nil {
		t.Fatalf("open %s: %v", addr, err)
	}
	tf, err := NewTransportFactory(transport, cfg)
	if err != nil {
		t.Fatalf("NewTransportFactory: %v", err)
	}
	pf, err := NewProtocolFactory(protocol, cfg)
	if err != nil {
		t.Fatalf("NewProtocolFactory: %v", err)
	}
	trans, err := tf.GetTransport(sock)
	if err != nil {
		t.Fatalf("GetTransport: %v", err)
	}
	t.Cleanup(func() { _ = trans.Close() })
	return &testKVClient{KVClient: kv.NewKVClientFactory(trans, pf), trans: trans}
}

// mustStatus calls Status and checks the answer.
func mustStatus(t *testing.T, c *testKVClient) {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.NodeID != "node-1" || st.Role != kv.Role_LEADER || st.Term != 3 {
		t.Fatalf("Status = %+v, want node-1 leader term 3", st)
	}
}

// mustDialRaw opens a plain TCP connection to addr, closed in t.Cleanup.
func mustDialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// mustWrite writes b to c.
func mustWrite(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// mustBeClosedByPeer reads (and discards) from c until the server closes it, failing if that takes
// longer than within. It returns the time it took.
func mustBeClosedByPeer(t *testing.T, c net.Conn, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(within)); err != nil {
		t.Fatalf("SetReadDeadline: %v", err)
	}
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", within)
		}
		return time.Since(start)
	}
}

// encodeCall returns a framed, strict-binary CALL of method whose args struct is written by args.
func encodeCall(t *testing.T, method string, args func(p thrift.TProtocol) error) []byte {
	t.Helper()
	ctx := context.Background()
	mem := thrift.NewTMemoryBuffer()
	p := thrift.NewTBinaryProtocolConf(mem, TConfiguration(0, 0, 0))
	if err := p.WriteMessageBegin(ctx, method, thrift.CALL, 1); err != nil {
		t.Fatalf("WriteMessageBegin: %v", err)
	}
	if err := args(p); err != nil {
		t.Fatalf("write args: %v", err)
	}
	if err := p.WriteMessageEnd(ctx); err != nil {
		t.Fatalf("WriteMessageEnd: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return frame(mem.Bytes())
}

// frame prefixes body with its 4-byte big-endian length.
func frame(body []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	return append(out, body...)
}

// statusCall is a framed binary call of status().
func statusCall(t *testing.T) []byte {
	return encodeCall(t, "status", func(p thrift.TProtocol) error {
		return kv.NewKVStatusArgs().Write(context.Background(), p)
	})
}

// allocatedDuring returns the bytes allocated (cumulatively) while fn ran.
func allocatedDuring(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestServer_Call(t *testing.T) {
	for _, tc := range []struct{ transport, protocol string }{
		{TransportFramed, ProtocolBinary},
		{TransportBuffered, ProtocolCompact},
		{"", ""},
	} {
		t.Run(fmt.Sprintf("%s_%s", tc.transport, tc.protocol), func(t *testing.T) {
			s := mustStartKVServer(t, func(c *ServerConfig) {
				c.Transport, c.Protocol = tc.transport, tc.protocol
			})
			c := mustDialKV(t, s.addr, tc.transport, tc.protocol)
			mustStatus(t, c)
			for i := int64(1); i <= 3; i++ {
				resp, err := c.Put(context.Background(), &kv.PutRequest{Key: []byte("k"), Value: []byte("v")})
				if err != nil {
					t.Fatalf("Put %d: %v", i, err)
				}
				if resp.Index != 100+i {
					t.Fatalf("Put %d index = %d, want %d", i, resp.Index, 100+i)
				}
			}
			if got := s.OpenConns(); got != 1 {
				t.Fatalf("OpenConns = %d, want 1", got)
			}
			if got := s.Accepted(); got != 1 {
				t.Fatalf("Accepted = %d, want 1", got)
			}
		})
	}
}

func TestServer_HandlerErrorKeepsConnection(t *testing.T) {
	s := mustStartKVServer(t, nil)
	c := mustDialKV(t, s.addr, "", "")
	_, err := c.Put(context.Background(), &kv.PutRequest{Key: []byte("fail"), Value: []byte("v")})
	var ae thrift.TApplicationException
	if !errors.As(err, &ae) || ae.TypeId() != thrift.INTERNAL_ERROR {
		t.Fatalf("Put(fail) error = %v, want an INTERNAL_ERROR application exception", err)
	}
	mustStatus(t, c) // same connection
	if got := s.Accepted(); got != 1 {
		t.Fatalf("Accepted = %d, want 1 (the connection was kept)", got)
	}
}

func TestServer_UnknownMethodKeepsConnection(t *testing.T) {
	s := mustStartKVServer(t, nil)
	raw := mustDialRaw(t, s.addr)
	mustWrite(t, raw, encodeCall(t, "no_such_method", func(p thrift.TProtocol) error {
		ctx := context.Background()
		if err := p.WriteStructBegin(ctx, "args"); err != nil {
			return err
		}
		if err := p.WriteFieldStop(ctx); err != nil {
			return err
		}
		return p.WriteStructEnd(ctx)
	}))

	cfg := TConfiguration(0, 0, 5*time.Second)
	trans := thrift.NewTFramedTransportConf(thrift.NewTSocketFromConnConf(raw, cfg), cfg)
	in := thrift.NewTBinaryProtocolConf(trans, cfg)
	ctx := context.Background()
	_, mtype, _, err := in.ReadMessageBegin(ctx)
	if err != nil || mtype != thrift.EXCEPTION {
		t.Fatalf("reply: type %v, err %v; want an EXCEPTION", mtype, err)
	}
	ae := thrift.NewTApplicationException(0, "")
	if err := ae.Read(ctx, in); err != nil {
		t.Fatalf("read exception: %v", err)
	}
	if ae.TypeId() != thrift.UNKNOWN_METHOD {
		t.Fatalf("exception type = %d, want UNKNOWN_METHOD", ae.TypeId())
	}
	if err := in.ReadMessageEnd(ctx); err != nil {
		t.Fatalf("ReadMessageEnd: %v", err)
	}
	pf, err := NewProtocolFactory("", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, &testKVClient{KVClient: kv.NewKVClientFactory(trans, pf), trans: trans})
}

func TestServer_GarbageClosesOnlyThatConnection(t *testing.T) {
	for _, transport := range []string{TransportFramed, TransportBuffered} {
		t.Run(transport, func(t *testing.T) {
			s := mustStartKVServer(t, func(c *ServerConfig) { c.Transport = transport })
			good := mustDialKV(t, s.addr, transport, "")
			mustStatus(t, good)

			bad := mustDialRaw(t, s.addr)
			mustWrite(t, bad, []byte("GET / HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n"))
			mustBeClosedByPeer(t, bad, 2*time.Second)

			mustStatus(t, good)
			testutil.WaitFor(t, 2*time.Second, "one open connection", func() bool { return s.OpenConns() == 1 })
		})
	}
}

func TestServer_HugeFrameHeader(t *testing.T) {
	s := mustStartKVServer(t, nil)
	good := mustDialKV(t, s.addr, "", "")
	mustStatus(t, good)

	// A frame claiming 2 GiB, then the start of a plausible body.
	msg := append(binary.BigEndian.AppendUint32(nil, 1<<31), statusCall(t)[4:]...)
	mustRefuseCheaply(t, s.addr, msg, "a 2 GiB frame")
	mustStatus(t, good)
}

// mustRefuseCheaply sends msg on a fresh connection to addr and fails t unless the server closes
// the connection having allocated less than 64 MiB meanwhile. what names the claim msg makes.
func mustRefuseCheaply(t *testing.T, addr string, msg []byte, what string) {
	t.Helper()
	alloc := allocatedDuring(func() {
		bad := mustDialRaw(t, addr)
		mustWrite(t, bad, msg)
		mustBeClosedByPeer(t, bad, 2*time.Second)
	})
	t.Logf("allocated %d bytes while refusing %s", alloc, what)
	if alloc > 64<<20 {
		t.Fatalf("allocated %d bytes while refusing %s, want < 64 MiB", alloc, what)
	}
}

func TestServer_HugeStringLength(t *testing.T) {
	for _, transport := range []string{TransportFramed, TransportBuffered} {
		t.Run(transport, func(t *testing.T) {
			s := mustStartKVServer(t, func(c *ServerConfig) { c.Transport = transport })
			good := mustDialKV(t, s.addr, transport, "")
			mustStatus(t, good)

			// put(req) whose req.key claims 2 GiB - 1 bytes, in a small valid frame.
			msg := encodeCall(t, "put", func(p thrift.TProtocol) error {
				ctx := context.Background()
				if err := p.WriteStructBegin(ctx, "args"); err != nil {
					return err
				}
				if err := p.WriteFieldBegin(ctx, "req", thrift.STRUCT, 1); err != nil {
					return err
				}
				if err := p.WriteFieldBegin(ctx, "key", thrift.STRING, 1); err != nil {
					return err
				}
				if err := p.WriteI32(ctx, 1<<31-1); err != nil {
					return err
				}
				_, err := p.Transport().Write([]byte("only a few bytes"))
				return err
			})
			if transport == TransportBuffered {
				msg = msg[4:]
			}
			mustRefuseCheaply(t, s.addr, msg, "a 2 GiB string")
			mustStatus(t, good)
		})
	}
}

func TestServer_BufferedRequestCap(t *testing.T) {
	s := mustStartKVServer(t, func(c *ServerConfig) {
		c.Transport = TransportBuffered
		c.MaxFrameSize = MinMaxFrameSize
		c.IdleTimeout = time.Minute
		c.ReadTimeout = time.Minute
	})
	// put(req) whose req holds ever more unknown 1000-byte string fields: each is within the message
	// size limit and skipped, but together they pass the request cap (MaxFrameSize + read-ahead slack).
	msg := encodeCall(t, "put", func(p thrift.TProtocol) error {
		ctx := context.Background()
		if err := p.WriteStructBegin(ctx, "args"); err != nil {
			return err
		}
		if err := p.WriteFieldBegin(ctx, "req", thrift.STRUCT, 1); err != nil {
			return err
		}
		filler := strings.Repeat("x", 1000)
		for range 100 {
			if err := p.WriteFieldBegin(ctx, "filler", thrift.STRING, 99); err != nil {
				return err
			}
			if err := p.WriteString(ctx, filler); err != nil {
				return err
			}
		}
		return nil
	})[4:]
	bad := mustDialRaw(t, s.addr)
	go func() { _, _ = bad.Write(msg) }() // may fail once the server closes the connection
	// With ReadTimeout a minute away, only the cap can close the connection this soon.
	mustBeClosedByPeer(t, bad, 5*time.Second)
}

func TestServer_IdleTimeout(t *testing.T) {
	const idle = 150 * time.Millisecond
	s := mustStartKVServer(t, func(c *ServerConfig) { c.IdleTimeout = idle })

	// Timed from before the dial: the server's idle clock starts at accept,
	// which is after this, so the bound holds however late this goroutine runs.
	dialed := time.Now()
	raw := mustDialRaw(t, s.addr)
	mustBeClosedByPeer(t, raw, 3*time.Second)
	if took := time.Since(dialed); took < idle {
		t.Fatalf("idle connection closed after %s, before the idle timeout %s", took, idle)
	}

	c := mustDialKV(t, s.addr, "", "")
	mustStatus(t, c)
	testutil.WaitFor(t, 3*time.Second, "the idle client to be dropped", func() bool { return s.OpenConns() == 0 })
	if _, err := c.Status(context.Background()); err == nil {
		t.Fatal("Status on a connection closed for idleness succeeded")
	}
}

func TestServer_SlowSenderDropped(t *testing.T) {
	s := mustStartKVServer(t, func(c *ServerConfig) {
		c.IdleTimeout = 10 * time.Second
		c.ReadTimeout = 200 * time.Millisecond
	})
	req := statusCall(t)
	raw := mustDialRaw(t, s.addr)

	closed := make(chan error, 1)
	go func() {
		_, err := raw.Read(make([]byte, 1))
		closed <- err
	}()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	sent := 0
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-closed:
			if err == nil {
				t.Fatal("the server answered a request sent one byte per 50ms")
			}
			if sent >= len(req) {
				t.Fatalf("connection closed only after the whole request (%d bytes) was sent", len(req))
			}
			t.Logf("dropped after %d of %d bytes", sent, len(req))
			return
		case <-ticker.C:
			if sent < len(req) {
				if _, err := raw.Write(req[sent : sent+1]); err == nil {
					sent++
				}
			}
		case <-deadline:
			t.Fatalf("slow sender still connected after 5s (%d of %d bytes sent)", sent, len(req))
		}
	}
}

func TestServer_MaxConns(t *testing.T) {
	s := mustStartKVServer(t, func(c *ServerConfig) { c.MaxConns = 3 })
	clients := make([]*testKVClient, 3)
	for i := range clients {
		clients[i] = mustDialKV(t, s.addr, "", "")
		mustStatus(t, clients[i]) // the server has accepted and tracks it
	}
	extra := mustDialRaw(t, s.addr)
	mustBeClosedByPeer(t, extra, 2*time.Second)
	if got := s.Rejected(); got != 1 {
		t.Fatalf("Rejected = %d, want 1", got)
	}
	for _, c := range clients {
		mustStatus(t, c)
	}
	if got := s.OpenConns(); got != 3 {
		t.Fatalf("OpenConns = %d, want 3", got)
	}

	// Freeing a slot admits a new connection.
	_ = clients[0].trans.Close()
	testutil.WaitFor(t, 2*time.Second, "two open connections", func() bool { return s.OpenConns() == 2 })
	mustStatus(t, mustDialKV(t, s.addr, "", ""))
}

func TestServer_HandlerPanicClosesOnlyThatConnection(t *testing.T) {
	s := mustStartKVServer(t, nil)
	other := mustDialKV(t, s.addr, "", "")
	mustStatus(t, other)

	victim := mustDialKV(t, s.addr, "", "")
	_, err := victim.Put(context.Background(), &kv.PutRequest{Key: []byte("panic"), Value: []byte("v")})
	var te thrift.TTransportException
	if !errors.As(err, &te) {
		t.Fatalf("Put(panic) error = %v, want a transport error (connection closed)", err)
	}
	if got := s.Panics(); got != 1 {
		t.Fatalf("Panics = %d, want 1", got)
	}
	mustStatus(t, other)
	mustStatus(t, mustDialKV(t, s.addr, "", ""))
	testutil.WaitFor(t, 2*time.Second, "two open connections", func() bool { return s.OpenConns() == 2 })
}

func TestServer_CloseIdempotentEndsServe(t *testing.T) {
	s := mustStartKVServer(t, nil)
	c := mustDialKV(t, s.addr, "", "")
	mustStatus(t, c)

	// A handler blocked on its context must not hold Close up.
	getErr := make(chan error, 1)
	blocked := mustDialKV(t, s.addr, "", "")
	go func() {
		_, err := blocked.Get(context.Background(), &kv.GetRequest{Key: []byte("k")})
		getErr <- err
	}()
	select {
	case <-s.handler.getEntered:
	case <-time.After(5 * time.Second):
		t.Fatal("Get handler never ran")
	}

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case err := <-s.served:
		if err != nil {
			t.Fatalf("Serve returned %v after Close, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	select {
	case err := <-getErr:
		if err == nil {
			t.Fatal("blocked Get succeeded across Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked Get did not end after Close")
	}

	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := s.OpenConns(); got != 0 {
		t.Fatalf("OpenConns after Close = %d, want 0", got)
	}
	if _, err := c.Status(context.Background()); err == nil {
		t.Fatal("Status after Close succeeded")
	}
	if err := s.Serve(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
	}
	if err := s.Listen(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Listen after Close = %v, want ErrServerClosed", err)
	}
	if _, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		t.Fatal("dial after Close succeeded: still listening")
	}
}

func TestServer_CloseBeforeServe(t *testing.T) {
	s, err := NewServer(&ServerConfig{Addr: "127.0.0.1:0"}, kv.NewKVProcessor(newSrvTestHandler()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Fatalf("Addr before Listen = %v, want nil", s.Addr())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Serve(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close = %v, want ErrServerClosed", err)
	}
}

func TestServerConfig_Validate(t *testing.T) {
	if err := DefaultServerConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	if err := (&ServerConfig{Addr: ":0"}).Validate(); err != nil {
		t.Fatalf("config with only Addr: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*ServerConfig)
		want string // the offending value, as the error must name it
	}{
		{"empty addr", func(c *ServerConfig) { c.Addr = "" }, "addr"},
		{"addr without port", func(c *ServerConfig) { c.Addr = "localhost" }, `"localhost"`},
		{"transport", func(c *ServerConfig) { c.Transport = "zlib" }, `"zlib"`},
		{"protocol", func(c *ServerConfig) { c.Protocol = "json" }, `"json"`},
		{"frame too small", func(c *ServerConfig) { c.MaxFrameSize = 100 }, "100"},
		{"frame negative", func(c *ServerConfig) { c.MaxFrameSize = -1 }, "-1"},
		{"frame too big", func(c *ServerConfig) { c.MaxFrameSize = MaxMaxFrameSize + 1 }, "1073741825"},
		{"max conns", func(c *ServerConfig) { c.MaxConns = -2 }, "-2"},
		{"idle timeout", func(c *ServerConfig) { c.IdleTimeout = -time.Second }, "-1s"},
		{"read timeout", func(c *ServerConfig) { c.ReadTimeout = -2 * time.Second }, "-2s"},
		{"write timeout", func(c *ServerConfig) { c.WriteTimeout = -3 * time.Second }, "-3s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultServerConfig()
			tc.edit(cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %q, want it to name %s", err, tc.want)
			}
			if _, err := NewServer(cfg, kv.NewKVProcessor(newSrvTestHandler()), nil); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("NewServer = %v, want ErrInvalidConfig", err)
			}
		})
	}
	var nilCfg *ServerConfig
	if err := nilCfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("nil config Validate = %v, want ErrInvalidConfig", err)
	}
	if _, err := NewServer(DefaultServerConfig(), nil, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("NewServer with nil processor = %v, want ErrInvalidConfig", err)
	}
}

func TestFactories_UnknownNames(t *testing.T) {
	if _, err := NewProtocolFactory("json", nil); !errors.Is(err, ErrUnknownProtocol) {
		t.Fatalf("NewProtocolFactory(json) = %v, want ErrUnknownProtocol", err)
	}
	if _, err := NewTransportFactory("header", nil); !errors.Is(err, ErrUnknownTransport) {
		t.Fatalf("NewTransportFactory(header) = %v, want ErrUnknownTransport", err)
	}
	cfg := TConfiguration(0, 0, 0)
	if cfg.GetMaxFrameSize() != DefaultMaxFrameSize || cfg.GetMaxMessageSize() != DefaultMaxFrameSize {
		t.Fatalf("TConfiguration(0) limits = %d/%d, want %d", cfg.GetMaxFrameSize(), cfg.GetMaxMessageSize(), DefaultMaxFrameSize)
	}
}

// TestServer_FrameLimitRefusesLargeValidRequest checks that a well-formed request over MaxFrameSize is
// refused: the limit is the configured one, not the library's 16 MB default.
func TestServer_FrameLimitRefusesLargeValidRequest(t *testing.T) {
	s := mustStartKVServer(t, func(c *ServerConfig) { c.MaxFrameSize = 64 << 10 })
	req := encodeCall(t, "put", func(p thrift.TProtocol) error {
		args := kv.NewKVPutArgs()
		args.Req = &kv.PutRequest{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 100<<10)}
		return args.Write(context.Background(), p)
	})
	raw := mustDialRaw(t, s.addr)
	go func() { _, _ = raw.Write(req) }()
	mustBeClosedByPeer(t, raw, 2*time.Second)
	if got := s.handler.puts.Load(); got != 0 {
		t.Fatalf("handler saw %d puts, want 0", got)
	}
	c := mustDialKV(t, s.addr, "", "")
	if _, err := c.Put(context.Background(), &kv.PutRequest{Key: []byte("k"), Value: bytes.Repeat([]byte("v"), 32<<10)}); err != nil {
		t.Fatalf("Put under the limit: %v", err)
	}
}

func TestServer_PeerGoneCancelsHandler(t *testing.T) {
	s := mustStartKVServer(t, nil)
	raw := mustDialRaw(t, s.addr)
	mustWrite(t, raw, encodeCall(t, "get", func(p thrift.TProtocol) error {
		args := kv.NewKVGetArgs()
		args.Req = &kv.GetRequest{Key: []byte("k")}
		return args.Write(context.Background(), p)
	}))
	select {
	case <-s.handler.getEntered:
	case <-time.After(5 * time.Second):
		t.Fatal("Get handler never ran")
	}
	_ = raw.Close()
	select {
	case <-s.handler.getDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled after its client hung up")
	}
	testutil.WaitFor(t, 2*time.Second, "no open connection", func() bool { return s.OpenConns() == 0 })
}

func TestServer_TLS(t *testing.T) {
	tlsCfg := mustTestTLSConfig(t)
	s := mustStartKVServer(t, func(c *ServerConfig) { c.TLS = tlsCfg })

	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.addr, tlsCfg)
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	cfg := TConfiguration(0, 0, 5*time.Second)
	trans := thrift.NewTFramedTransportConf(thrift.NewTSocketFromConnConf(conn, cfg), cfg)
	pf, err := NewProtocolFactory("", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustStatus(t, &testKVClient{KVClient: kv.NewKVClientFactory(trans, pf), trans: trans})

	// Plaintext Thrift to the TLS port is refused and closed.
	plain := mustDialRaw(t, s.addr)
	mustWrite(t, plain, statusCall(t))
	mustBeClosedByPeer(t, plain, 5*time.Second)
}
