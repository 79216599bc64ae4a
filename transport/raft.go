package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// RaftKeepAlivePeriod is the TCP keepalive period of Raft stream connections, dialed and accepted.
const RaftKeepAlivePeriod = 30 * time.Second

// ErrNotAdvertisable is returned by NewTCPStreamLayer when the address peers would dial is unspecified
// (0.0.0.0 or ::), has port 0, or is not host:port.
var ErrNotAdvertisable = errors.New("raft address is not advertisable")

// TCPStreamLayer implements raft.StreamLayer over TCP, and over TLS when given a tls.Config. Dialed and
// accepted connections have TCP_NODELAY and keepalive set. Its methods are safe for concurrent use.
type TCPStreamLayer struct {
	ln        *net.TCPListener
	advertise net.Addr    // what Addr returns; the listener's address when none was given
	tlsCfg    *tls.Config // nil: plaintext
	slots     chan struct{}
	rejected  atomic.Uint64

	closeOnce sync.Once
	closeErr  error // set once by closeOnce
}

var _ raft.StreamLayer = (*TCPStreamLayer)(nil)

// NewTCPStreamLayer listens on bindAddr (host:port; port 0 picks a free one). advertise is the address
// peers dial; nil means the listener's address. The effective address must be advertisable: an
// unspecified IP (0.0.0.0, ::) or port 0 is refused with ErrNotAdvertisable, so bind 0.0.0.0 only with
// an explicit advertise address. tlsCfg nil means plaintext; otherwise it is used for both accepted
// (server side) and dialed (client side) connections, and must hold what both need (certificates,
// RootCAs/ClientCAs, ClientAuth).
func NewTCPStreamLayer(bindAddr string, advertise net.Addr, tlsCfg *tls.Config) (*TCPStreamLayer, error) {
	if advertise != nil {
		if err := checkAdvertisable(advertise); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("listen raft %s: %w", bindAddr, err)
	}
	l := &TCPStreamLayer{ln: ln.(*net.TCPListener), advertise: advertise, tlsCfg: tlsCfg, slots: make(chan struct{}, MaxRaftConns)}
	if advertise == nil {
		l.advertise = ln.Addr()
		if err := checkAdvertisable(l.advertise); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("raft bind address %s without an advertise address: %w", bindAddr, err)
		}
	}
	return l, nil
}

// checkAdvertisable returns ErrNotAdvertisable (wrapped, naming addr) unless addr is host:port with a
// non-zero port and a host that is a name or a specified IP.
func checkAdvertisable(addr net.Addr) error {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrNotAdvertisable, addr.String(), err)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("%w: %q: port must be 1-65535", ErrNotAdvertisable, addr.String())
	}
	if host == "" {
		return fmt.Errorf("%w: %q: host is empty", ErrNotAdvertisable, addr.String())
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("%w: %q: IP is unspecified", ErrNotAdvertisable, addr.String())
	}
	return nil
}

// Limits of the Raft port, which anyone who can reach it can connect to.
const (
	// MaxRaftConns is how many accepted connections may be open at once;
	// further ones are closed at once. Peers keep a few each.
	MaxRaftConns = 256
	// RaftFirstByteTimeout bounds the TLS handshake and the first request
	// of an accepted connection; raft peers send theirs at once.
	RaftFirstByteTimeout = 10 * time.Second
)

// Accept waits for the next connection. After Close it returns an error wrapping net.ErrClosed.
// Connections beyond MaxRaftConns are closed at once; each accepted one must complete its TLS
// handshake and deliver its first bytes within RaftFirstByteTimeout.
func (l *TCPStreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.rejected.Add(1)
			_ = c.Close()
			continue
		}
		tuneTCP(c)
		_ = c.SetReadDeadline(time.Now().Add(RaftFirstByteTimeout))
		var inner net.Conn = c
		if l.tlsCfg != nil {
			inner = tls.Server(c, l.tlsCfg)
		}
		return &acceptedConn{Conn: inner, raw: c, release: func() { <-l.slots }}, nil
	}
}

// Rejected returns how many connections were closed for exceeding MaxRaftConns.
func (l *TCPStreamLayer) Rejected() uint64 { return l.rejected.Load() }

// acceptedConn frees its slot on Close and lifts the first-byte deadline
// once the first bytes (after any TLS handshake) have arrived.
type acceptedConn struct {
	net.Conn
	raw       *net.TCPConn
	release   func()
	started   atomic.Bool
	closeOnce sync.Once
}

func (c *acceptedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.started.Load() {
		c.started.Store(true)
		_ = c.raw.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (c *acceptedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(c.release)
	return err
}

// Close stops listening. Connections already accepted or dialed are not closed. It is idempotent.
func (l *TCPStreamLayer) Close() error {
	l.closeOnce.Do(func() {
		if err := l.ln.Close(); err != nil {
			l.closeErr = fmt.Errorf("close raft listener: %w", err)
		}
	})
	return l.closeErr
}

// Addr returns the advertised address when one was given, else the listener's address.
func (l *TCPStreamLayer) Addr() net.Addr {
	return l.advertise
}

// Dial connects to a peer's stream layer, the TCP connect and any TLS handshake both within timeout
// (0: no limit). With TLS the handshake completes once the peer reads the accepted connection, which
// raft's NetworkTransport does at once.
func (l *TCPStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: RaftKeepAlivePeriod}
	start := time.Now()
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	tc, ok := c.(*net.TCPConn)
	if ok {
		tuneTCP(tc)
	}
	if l.tlsCfg == nil {
		return c, nil
	}

	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	cfg := forHost(l.tlsCfg, host)
	tlsConn := tls.Client(c, cfg)
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(timeout))
		defer cancel()
	}
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("tls handshake with raft peer %s: %w", address, err)
	}
	return tlsConn, nil
}

// tuneTCP sets TCP_NODELAY and keepalive on a Raft connection. Failures are ignored: they only cost
// latency or slower dead-peer detection, and the connection still works.
func tuneTCP(c *net.TCPConn) {
	_ = c.SetNoDelay(true)
	_ = c.SetKeepAlive(true)
	_ = c.SetKeepAlivePeriod(RaftKeepAlivePeriod)
}

// NewRaftTransport builds raft's NetworkTransport over layer (with the stuck-pipeline guard of
// RaftTransport): maxPool pooled connections per peer,
// timeout as its I/O deadline (scaled up for snapshots by raft). logger nil discards raft transport logs.
func NewRaftTransport(layer *TCPStreamLayer, maxPool int, timeout time.Duration, logger hclog.Logger) *RaftTransport {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &RaftTransport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  layer,
			MaxPool: maxPool,
			Timeout: timeout,
			Logger:  logger,
		}),
		timeout: timeout,
	}
}
