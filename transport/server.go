package transport

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
)

// Server defaults, used when the matching ServerConfig field is zero.
const (
	// DefaultServerAddr is the listen address of DefaultServerConfig.
	DefaultServerAddr = "127.0.0.1:9090"
	// DefaultMaxFrameSize is the largest frame (and message) a server accepts, in bytes.
	DefaultMaxFrameSize int32 = 8 << 20
	// DefaultMaxConns is the number of connections a server keeps open at once.
	DefaultMaxConns = 1024
	// DefaultIdleTimeout is how long a server waits for the next request on a connection.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultReadTimeout is how long a request may take to arrive once its first byte has.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds each write of a response.
	DefaultWriteTimeout = 10 * time.Second
)

// Bounds checked by ServerConfig.Validate.
const (
	// MinMaxFrameSize is the smallest non-zero MaxFrameSize accepted, in bytes.
	MinMaxFrameSize int32 = 4 << 10
	// MaxMaxFrameSize is the largest MaxFrameSize accepted, in bytes.
	MaxMaxFrameSize int32 = 1 << 30
)

const (
	// readAheadSlack is added to MaxFrameSize (plus the 4-byte frame header) to get the most bytes one
	// request may read from the socket: the transports' buffers may read ahead into the next request.
	readAheadSlack = 16 << 10
	// rejectLogInterval is the least time between two warnings about rejected connections.
	rejectLogInterval = time.Second
	// acceptBackoffMin and acceptBackoffMax bound the pause after a failed Accept (e.g. out of file
	// descriptors) before trying again.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

var (
	// ErrServerClosed is returned by Listen and Serve once Close has been called.
	ErrServerClosed = errors.New("thrift server closed")
	// ErrInvalidConfig is wrapped by every error ServerConfig.Validate returns.
	ErrInvalidConfig = errors.New("invalid thrift server config")
)

// ServerConfig configures a Thrift server. The zero value of every field but Addr means its default.
type ServerConfig struct {
	// Addr is the TCP listen address, e.g. "127.0.0.1:9090" or ":0" for any free port. Required.
	Addr string
	// Transport is "framed" or "buffered". Empty means "framed".
	Transport string
	// Protocol is "binary" or "compact". Empty means "binary".
	Protocol string
	// MaxFrameSize is the largest frame, and the largest message, accepted, in bytes. With the buffered
	// transport it bounds the bytes one request may read. 0 means DefaultMaxFrameSize.
	MaxFrameSize int32
	// MaxConns is the number of connections open at once; a connection accepted beyond it is closed
	// at once. 0 means DefaultMaxConns.
	MaxConns int
	// IdleTimeout closes a connection that sends no request for this long. 0 means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ReadTimeout is how long a request may take to arrive in full once its first byte has (and how
	// long a TLS handshake may take). 0 means DefaultReadTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds each socket write of a response. 0 means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// TLS, when non-nil, makes every accepted connection a TLS server connection with this
	// configuration. nil means plaintext.
	TLS *tls.Config
}

// DefaultServerConfig returns a config listening on DefaultServerAddr with every limit at its default.
func DefaultServerConfig() *ServerConfig {
	return &ServerConfig{
		Addr:         DefaultServerAddr,
		Transport:    TransportFramed,
		Protocol:     ProtocolBinary,
		MaxFrameSize: DefaultMaxFrameSize,
		MaxConns:     DefaultMaxConns,
		IdleTimeout:  DefaultIdleTimeout,
		ReadTimeout:  DefaultReadTimeout,
		WriteTimeout: DefaultWriteTimeout,
	}
}

// Validate reports the first invalid field. Every error wraps ErrInvalidConfig and names the value.
func (c *ServerConfig) Validate() error {
	if c == nil {
		return fmt.Errorf("%w: config is nil", ErrInvalidConfig)
	}
	if c.Addr == "" {
		return fmt.Errorf("%w: addr is empty", ErrInvalidConfig)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("%w: addr %q: %w", ErrInvalidConfig, c.Addr, err)
	}
	switch c.Transport {
	case "", TransportFramed, TransportBuffered:
	default:
		return fmt.Errorf("%w: transport %q: %w", ErrInvalidConfig, c.Transport, ErrUnknownTransport)
	}
	switch c.Protocol {
	case "", ProtocolBinary, ProtocolCompact:
	default:
		return fmt.Errorf("%w: protocol %q: %w", ErrInvalidConfig, c.Protocol, ErrUnknownProtocol)
	}
	if c.MaxFrameSize != 0 && (c.MaxFrameSize < MinMaxFrameSize || c.MaxFrameSize > MaxMaxFrameSize) {
		return fmt.Errorf("%w: max frame size %d: must be 0 or between %d and %d",
			ErrInvalidConfig, c.MaxFrameSize, MinMaxFrameSize, MaxMaxFrameSize)
	}
	if c.MaxConns < 0 {
		return fmt.Errorf("%w: max conns %d: must not be negative", ErrInvalidConfig, c.MaxConns)
	}
	if c.IdleTimeout < 0 {
		return fmt.Errorf("%w: idle timeout %s: must not be negative", ErrInvalidConfig, c.IdleTimeout)
	}
	if c.ReadTimeout < 0 {
		return fmt.Errorf("%w: read timeout %s: must not be negative", ErrInvalidConfig, c.ReadTimeout)
	}
	if c.WriteTimeout < 0 {
		return fmt.Errorf("%w: write timeout %s: must not be negative", ErrInvalidConfig, c.WriteTimeout)
	}
	return nil
}

// withDefaults returns a copy of c with every zero field replaced by its default.
func (c *ServerConfig) withDefaults() ServerConfig {
	r := *c
	r.Transport = cmp.Or(r.Transport, TransportFramed)
	r.Protocol = cmp.Or(r.Protocol, ProtocolBinary)
	r.MaxFrameSize = cmp.Or(r.MaxFrameSize, DefaultMaxFrameSize)
	r.MaxConns = cmp.Or(r.MaxConns, DefaultMaxConns)
	r.IdleTimeout = cmp.Or(r.IdleTimeout, DefaultIdleTimeout)
	r.ReadTimeout = cmp.Or(r.ReadTimeout, DefaultReadTimeout)
	r.WriteTimeout = cmp.Or(r.WriteTimeout, DefaultWriteTimeout)
	return r
}

// Server serves one thrift.TProcessor over TCP with hard limits on frame size, open connections and
// time. Each connection is served by its own goroutine, one request at a time.
//
// The Thrift libraries check a frame's length against MaxFrameSize before reading it, and every string,
// binary and container length against MaxMessageSize (= MaxFrameSize) before allocating for it; their
// buffers grow with the bytes that actually arrive. The server also caps the bytes one request may read
// (which bounds buffered-transport requests the same way) and closes a connection on any transport or
// protocol error.
type Server struct {
	cfg          ServerConfig // with defaults applied; read-only after NewServer
	processor    thrift.TProcessor
	logger       *slog.Logger
	transFactory thrift.TTransportFactory
	protoFactory thrift.TProtocolFactory
	maxRequest   int64 // most bytes one request may read from the socket

	// ctx is passed to every Process call; cancel ends it on Close.
	ctx    context.Context
	cancel context.CancelFunc

	accepted atomic.Uint64
	rejected atomic.Uint64
	panics   atomic.Uint64

	// wg counts the running Serve loops and connection goroutines. Add is called only under mu while
	// closed is false, so Close's Wait never races with an Add.
	wg sync.WaitGroup

	// mu guards ln, closed, conns and lastRejectLog.
	mu            sync.Mutex
	ln            net.Listener
	closed        bool
	conns         map[net.Conn]struct{} // open connections, as accepted (before any TLS wrapping)
	lastRejectLog time.Time
}

// NewServer validates cfg and allocates a server for processor. It does no I/O: call Listen (optional)
// and Serve. logger nil discards logs; the caller names the component.
func NewServer(cfg *ServerConfig, processor thrift.TProcessor, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if processor == nil {
		return nil, fmt.Errorf("%w: processor is nil", ErrInvalidConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := cfg.withDefaults()
	tcfg := TConfiguration(c.MaxFrameSize, 0, 0)
	transFactory, err := NewTransportFactory(c.Transport, tcfg)
	if err != nil {
		return nil, fmt.Errorf("new thrift server: %w", err)
	}
	protoFactory, err := NewProtocolFactory(c.Protocol, tcfg)
	if err != nil {
		return nil, fmt.Errorf("new thrift server: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:          c,
		processor:    processor,
		logger:       logger,
		transFactory: transFactory,
		protoFactory: protoFactory,
		maxRequest:   int64(c.MaxFrameSize) + 4 + readAheadSlack,
		ctx:          ctx,
		cancel:       cancel,
		conns:        make(map[net.Conn]struct{}),
	}, nil
}

// Listen binds the listen address, so Addr is known before Serve (e.g. for ":0"). Calling it again
// once bound does nothing. After Close it returns ErrServerClosed.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Addr, err)
	}
	s.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// OpenConns returns the number of connections open now.
func (s *Server) OpenConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Accepted returns the number of connections accepted and served since the server was created.
func (s *Server) Accepted() uint64 { return s.accepted.Load() }

// Rejected returns the number of connections closed at once because MaxConns were open.
func (s *Server) Rejected() uint64 { return s.rejected.Load() }

// Panics returns the number of connections closed because serving them panicked.
func (s *Server) Panics() uint64 { return s.panics.Load() }

// Serve accepts connections until Close, binding first if Listen was not called. It returns nil after
// Close, ErrServerClosed if Close came first, or the error that stopped the accept loop.
func (s *Server) Serve() error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	ln := s.ln
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
			}
			// Out of file descriptors, a connection aborted before accept, ...: pause and retry.
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			s.logger.Warn("thrift accept failed", "addr", ln.Addr().String(), "err", err, "duration", backoff)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		s.admit(conn)
	}
}

// isClosed reports whether Close has been called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// admit starts serving conn, or closes it at once when the server is closed or full.
func (s *Server) admit(conn net.Conn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = conn.Close()
		return
	}
	if len(s.conns) >= s.cfg.MaxConns {
		n := s.rejected.Add(1)
		now := time.Now()
		warn := now.Sub(s.lastRejectLog) >= rejectLogInterval
		if warn {
			s.lastRejectLog = now
		}
		s.mu.Unlock()
		_ = conn.Close()
		if warn {
			s.logger.Warn("thrift connection rejected: too many open connections",
				"addr", conn.RemoteAddr().String(), "count", n)
		}
		return
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.accepted.Add(1)
	go s.serveConn(conn)
}

// serveConn serves requests on conn until an error, a timeout, a panic or Close, then closes it.
func (s *Server) serveConn(raw net.Conn) {
	remote := raw.RemoteAddr().String()
	defer s.wg.Done()
	defer func() {
		_ = raw.Close()
		s.mu.Lock()
		delete(s.conns, raw)
		s.mu.Unlock()
	}()
	defer func() {
		if r := recover(); r != nil {
			s.panics.Add(1)
			// The panic value may carry request data, so only its type (or a runtime error's
			// message, which holds none) is logged.
			s.logger.Error("thrift connection panicked; closing it", "addr", remote, "err", panicDescription(r))
		}
	}()

	conn := raw
	if s.cfg.TLS != nil {
		tc := tls.Server(raw, s.cfg.TLS)
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.logger.Debug("thrift tls handshake failed", "addr", remote, "err", err)
			return
		}
		conn = tc
	}

	dc := &deadlineConn{
		Conn:         conn,
		idleTimeout:  s.cfg.IdleTimeout,
		readTimeout:  s.cfg.ReadTimeout,
		writeTimeout: s.cfg.WriteTimeout,
		maxRequest:   s.maxRequest,
	}
	var nc net.Conn = dc
	if _, ok := rawSyscallConn(conn); ok {
		// Lets Thrift's connectivity check see a peer that hung up while its request is being
		// handled, and cancel the handler's context.
		nc = &deadlineSyscallConn{dc}
	}
	sock := thrift.NewTSocketFromConnConf(nc, TConfiguration(s.cfg.MaxFrameSize, 0, 0))
	trans, err := s.transFactory.GetTransport(sock)
	if err != nil {
		s.logger.Debug("thrift transport setup failed", "addr", remote, "err", err)
		return
	}
	in := s.protoFactory.GetProtocol(trans)
	out := s.protoFactory.GetProtocol(trans)

	for {
		dc.startRequest()
		ok, err := s.processor.Process(s.ctx, in, out)
		if keepConn(ok, err) {
			continue
		}
		if err != nil {
			s.logger.Debug("thrift connection closed", "addr", remote, "err", err)
		}
		return
	}
}

// keepConn reports whether a connection stays open after Process returned (ok, err). It does when a
// response was written: a normal answer, a handler error answered as a TApplicationException (ok is
// true), or an unknown method answered as one. A transport or protocol error, an abandoned request or
// anything else closes it: the stream may be out of step.
func keepConn(ok bool, err error) bool {
	if ok {
		return true
	}
	if err == nil || errors.Is(err, thrift.ErrAbandonRequest) {
		return false
	}
	var te thrift.TTransportException
	if errors.As(err, &te) {
		return false
	}
	var pe thrift.TProtocolException
	if errors.As(err, &pe) {
		return false
	}
	var ae thrift.TApplicationException
	return errors.As(err, &ae) && ae.TypeId() == thrift.UNKNOWN_METHOD
}

// panicDescription describes a recovered panic value without its contents.
func panicDescription(r any) string {
	if re, ok := r.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("panic of type %T", r)
}

// Close stops accepting, closes every open connection, cancels the handlers' context and waits for the
// accept loop and every connection goroutine to end. It is idempotent; later calls also wait.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	ln := s.ln
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	s.cancel()
	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("close thrift listener: %w", cerr)
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	s.wg.Wait()
	return err
}
