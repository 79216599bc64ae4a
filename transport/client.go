package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/cubekv/cubekv/thrift/kv"
)

// Client-side defaults used when a DialConfig field is zero.
const (
	// DefaultClientTransport is the Thrift transport a client uses when DialConfig.Transport is empty.
	DefaultClientTransport = TransportFramed
	// DefaultClientProtocol is the Thrift protocol a client uses when DialConfig.Protocol is empty.
	DefaultClientProtocol = ProtocolBinary
	// DefaultClientMaxFrameSize is the largest frame a client sends or accepts when DialConfig.MaxFrameSize is 0.
	DefaultClientMaxFrameSize = DefaultMaxFrameSize
	// DefaultConnectTimeout bounds a TCP (and TLS) connect when DialConfig.ConnectTimeout is 0.
	DefaultConnectTimeout = 3 * time.Second
	// DefaultRequestTimeout bounds one call's socket I/O when DialConfig.RequestTimeout is 0.
	DefaultRequestTimeout = 10 * time.Second
)

// Service names on a node's Thrift port. KV is also served as the default
// (non-multiplexed) service, so plain clients reach it without a
// TMultiplexedProtocol; Cluster and Internal are reached multiplexed.
const (
	ServiceKV       = "KV"
	ServiceCluster  = "Cluster"
	ServiceInternal = "Internal"
)

// ErrConnClosed is returned by Conn.Call on a connection that was closed.
var ErrConnClosed = errors.New("connection closed")

// DialConfig says how a client connects to a node's Thrift front door.
type DialConfig struct {
	// Transport is the Thrift transport, TransportFramed or TransportBuffered; it must match the
	// server's. Empty means DefaultClientTransport.
	Transport string
	// Protocol is the Thrift protocol, ProtocolBinary or ProtocolCompact; it must match the server's.
	// Empty means DefaultClientProtocol.
	Protocol string
	// MaxFrameSize is the largest frame, in bytes, sent or accepted. 0 means DefaultClientMaxFrameSize.
	MaxFrameSize int32
	// ConnectTimeout bounds connecting (TCP and TLS handshake). 0 means DefaultConnectTimeout. A context
	// deadline that comes sooner wins.
	ConnectTimeout time.Duration
	// RequestTimeout bounds the socket I/O of one call (the socket deadline is the sooner of now plus
	// RequestTimeout and the call's context deadline). 0 means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// TLS, when non-nil, wraps the connection in TLS with this configuration. nil means plaintext.
	TLS *tls.Config
}

// withDefaults returns a copy of cfg (which may be nil) with zero fields replaced by defaults.
func (cfg *DialConfig) withDefaults() DialConfig {
	var c DialConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Transport == "" {
		c.Transport = DefaultClientTransport
	}
	if c.Protocol == "" {
		c.Protocol = DefaultClientProtocol
	}
	if c.MaxFrameSize <= 0 {
		c.MaxFrameSize = DefaultClientMaxFrameSize
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	return c
}

// Conn is one open Thrift connection with a generated KV client. It is not safe for concurrent use:
// one caller at a time, typically borrowed from a Pool.
//
// Socket deadlines are managed by Conn itself, so use Call rather than calling KV directly; a direct
// call on KV runs without any deadline.
type Conn struct {
	// KV is the generated client bound to this connection (the default,
	// non-multiplexed service).
	KV *kv.KVClient
	// Cluster and Internal are the multiplexed Cluster and Internal
	// services on the same connection.
	Cluster  *kv.ClusterClient
	Internal *kv.InternalClient

	addr    string
	nc      *countingConn
	probe   *thrift.TSocket // over the same socket, used only for its connectivity check
	trans   thrift.TTransport
	timeout time.Duration // per-call socket I/O bound (DialConfig.RequestTimeout)
	broken  bool          // a call failed in a way that leaves the stream unusable
	closed  bool
}

// Dial connects to the Thrift front door at addr (host:port). cfg may be nil for the defaults. The
// connect is bounded by the sooner of cfg.ConnectTimeout and ctx's deadline.
func Dial(ctx context.Context, addr string, cfg *DialConfig) (*Conn, error) {
	c := cfg.withDefaults()
	tcfg := TConfiguration(c.MaxFrameSize, c.ConnectTimeout, c.RequestTimeout)
	protoFactory, err := NewProtocolFactory(c.Protocol, tcfg)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	transFactory, err := NewTransportFactory(c.Transport, tcfg)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}

	dctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout)
	defer cancel()
	var nc net.Conn
	if c.TLS != nil {
		host, _, splitErr := net.SplitHostPort(addr)
		if splitErr != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, splitErr)
		}
		d := &tls.Dialer{Config: forHost(c.TLS, host)}
		nc, err = d.DialContext(dctx, "tcp", addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}

	cc := &countingConn{Conn: nc}
	// StreamTransport, unlike TSocket, never touches the socket deadlines, so Call owns them.
	trans, err := transFactory.GetTransport(thrift.NewStreamTransportRW(cc))
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	proto := protoFactory.GetProtocol(trans)
	return &Conn{
		KV:       kv.NewKVClientFactory(trans, protoFactory),
		Cluster:  kv.NewClusterClientProtocol(trans, thrift.NewTMultiplexedProtocol(proto, ServiceCluster), thrift.NewTMultiplexedProtocol(proto, ServiceCluster)),
		Internal: kv.NewInternalClientProtocol(trans, thrift.NewTMultiplexedProtocol(proto, ServiceInternal), thrift.NewTMultiplexedProtocol(proto, ServiceInternal)),
		addr:     addr,
		nc:       cc,
		probe:    thrift.NewTSocketFromConnConf(nc, nil),
		trans:    trans,
		timeout:  c.RequestTimeout,
	}, nil
}

// Addr returns the address the connection was dialled to.
func (c *Conn) Addr() string { return c.addr }

// Call runs fn, which should make exactly one call on kvc (the connection's KV client). The socket
// deadline is the sooner of ctx's deadline and now plus the RequestTimeout; cancelling ctx interrupts
// the call. sent reports whether any byte of the request reached the socket: when it is false the
// server cannot have seen the request. After an error other than a declared KV exception the
// connection is marked broken (see Broken) and must not be reused.
func (c *Conn) Call(ctx context.Context, fn func(ctx context.Context, kvc *kv.KVClient) error) (sent bool, err error) {
	return c.Do(ctx, func(ctx context.Context) error { return fn(ctx, c.KV) })
}

// Do is Call for any of the connection's clients (KV, Cluster, Internal):
// fn makes exactly one call on one of them, with the same deadline and
// broken-connection rules.
func (c *Conn) Do(ctx context.Context, fn func(ctx context.Context) error) (sent bool, err error) {
	if c.closed || c.broken {
		return false, ErrConnClosed
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	deadline := time.Now().Add(c.timeout)
	d, hasDeadline := ctx.Deadline()
	sooner := hasDeadline && !d.After(deadline)
	if sooner {
		deadline = d
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		c.broken = true
		return false, fmt.Errorf("set deadline: %w", err)
	}
	// The Thrift protocols retry a read that timed out for as long as their context has time left,
	// so the context fn sees must end with the socket deadline: ctx itself when its deadline is the
	// sooner one (no timer of our own per call), else a child ending at the RequestTimeout.
	callCtx := ctx
	if !sooner {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	// Cancellation (not only the deadline) must interrupt blocked I/O.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(callCtx, func() {
		_ = c.nc.SetDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	before := c.nc.written
	err = fn(callCtx)
	if !stop() {
		// The interrupt has started; let it finish so it cannot clobber the next call's deadline.
		<-interrupted
	}
	sent = c.nc.written > before
	if err == nil {
		// Even when ctx ended just after the answer arrived, the connection stays usable: the next
		// Call sets a fresh deadline.
		return sent, nil
	}
	if !isDeclaredException(err) {
		c.broken = true
		if ctxErr := ContextDone(ctx); ctxErr != nil {
			// Report the context's error rather than the socket's i/o timeout it caused.
			return sent, fmt.Errorf("%w: %w", ctxErr, err)
		}
	}
	return sent, err
}

// ContextDone returns ctx's error, or context.DeadlineExceeded once its deadline has passed even if
// its timer has not fired yet (a socket deadline set to the same instant can expire first).
func ContextDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// Broken reports whether a call failed in a way that leaves the connection unusable.
func (c *Conn) Broken() bool { return c.broken }

// Close closes the connection. It is idempotent.
func (c *Conn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.nc.Close()
}

// alive reports whether an idle connection still looks usable: the peer has not closed it. It is a
// best-effort, non-blocking check before reuse (Thrift's own connectivity check on TSocket).
func (c *Conn) alive() bool {
	return !c.closed && !c.broken && c.probe.IsOpen()
}

// isDeclaredException reports whether err is one of the exceptions the KV service declares: the server
// answered in full, so the stream is still in step.
func isDeclaredException(err error) bool {
	var (
		invalid     *kv.InvalidArgument
		notLeader   *kv.NotLeader
		unavailable *kv.Unavailable
		timeout     *kv.Timeout
		compacted   *kv.Compacted
		leaseGone   *kv.LeaseNotFound
	)
	return errors.As(err, &invalid) || errors.As(err, &notLeader) ||
		errors.As(err, &unavailable) || errors.As(err, &timeout) || errors.As(err, &compacted) ||
		errors.As(err, &leaseGone)
}

// countingConn counts the bytes written to the socket, so a caller can tell whether a request may have
// reached the server. Only the goroutine using the Conn touches written.
type countingConn struct {
	net.Conn
	written uint64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.written += uint64(n)
	return n, err
}
