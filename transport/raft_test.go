package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/testutil"
)

// mustStreamLayer returns a plaintext layer on 127.0.0.1:0, closed in t.Cleanup.
func mustStreamLayer(t *testing.T, tlsCfg *tls.Config) *TCPStreamLayer {
	t.Helper()
	l, err := NewTCPStreamLayer("127.0.0.1:0", nil, tlsCfg)
	if err != nil {
		t.Fatalf("NewTCPStreamLayer: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// mustExchange dials to from from, accepts on to, and checks bytes flow both ways.
func mustExchange(t *testing.T, from, to *TCPStreamLayer) {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := to.Accept()
		var inner net.Conn = c
		if ac, ok := c.(*acceptedConn); ok {
			inner = ac.Conn
		}
		if tc, ok := inner.(*tls.Conn); ok && err == nil {
			// Raft reads an accepted connection at once, which runs the server side of the
			// handshake the dialer waits for; do the same.
			_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
			err = tc.Handshake()
		}
		acc <- accepted{c, err}
	}()
	out, err := from.Dial(raft.ServerAddress(to.Addr().String()), 2*time.Second)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer out.Close()
	a := <-acc
	if a.err != nil {
		t.Fatalf("Accept: %v", a.err)
	}
	in := a.c
	defer in.Close()
	_ = out.SetDeadline(time.Now().Add(5 * time.Second))
	_ = in.SetDeadline(time.Now().Add(5 * time.Second))

	ping, pong := []byte("ping from dialer"), []byte("pong from acceptor")
	werr := make(chan error, 1)
	go func() { _, err := out.Write(ping); werr <- err }()
	got := make([]byte, len(ping))
	if _, err := io.ReadFull(in, got); err != nil || !bytes.Equal(got, ping) {
		t.Fatalf("acceptor read %q, %v; want %q", got, err, ping)
	}
	if err := <-werr; err != nil {
		t.Fatalf("dialer write: %v", err)
	}
	go func() { _, err := in.Write(pong); werr <- err }()
	got = make([]byte, len(pong))
	if _, err := io.ReadFull(out, got); err != nil || !bytes.Equal(got, pong) {
		t.Fatalf("dialer read %q, %v; want %q", got, err, pong)
	}
	if err := <-werr; err != nil {
		t.Fatalf("acceptor write: %v", err)
	}
}

func TestTCPStreamLayer_DialAccept(t *testing.T) {
	a, b := mustStreamLayer(t, nil), mustStreamLayer(t, nil)
	mustExchange(t, a, b)
	mustExchange(t, b, a)
}

func TestTCPStreamLayer_TLS(t *testing.T) {
	tlsCfg := mustTestTLSConfig(t)
	a, b := mustStreamLayer(t, tlsCfg), mustStreamLayer(t, tlsCfg)
	mustExchange(t, a, b)

	// A TLS dial to a plaintext layer fails within the timeout instead of hanging.
	plain := mustStreamLayer(t, nil)
	go func() {
		if c, err := plain.Accept(); err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}
	}()
	start := time.Now()
	if c, err := a.Dial(raft.ServerAddress(plain.Addr().String()), 300*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("TLS dial to a plaintext layer succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("failed TLS dial took %s, want about the 300ms timeout", took)
	}
}

func TestTCPStreamLayer_Addr(t *testing.T) {
	adv := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 7000}
	l, err := NewTCPStreamLayer("127.0.0.1:0", adv, nil)
	if err != nil {
		t.Fatalf("NewTCPStreamLayer with advertise: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	if got := l.Addr().String(); got != adv.String() {
		t.Fatalf("Addr = %s, want the advertised %s", got, adv)
	}

	l2 := mustStreamLayer(t, nil)
	if tcp, ok := l2.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() || tcp.Port == 0 {
		t.Fatalf("Addr without advertise = %v, want the bound loopback address", l2.Addr())
	}

	for _, tc := range []struct {
		name      string
		bind      string
		advertise net.Addr
	}{
		{"unspecified advertise", "127.0.0.1:0", &net.TCPAddr{IP: net.IPv4zero, Port: 7000}},
		{"unspecified v6 advertise", "127.0.0.1:0", &net.TCPAddr{IP: net.IPv6unspecified, Port: 7000}},
		{"advertise port 0", "127.0.0.1:0", &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 0}},
		{"unspecified bind, no advertise", "0.0.0.0:0", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewTCPStreamLayer(tc.bind, tc.advertise, nil)
			if err == nil {
				l.Close()
				t.Fatal("NewTCPStreamLayer succeeded, want ErrNotAdvertisable")
			}
			if !errors.Is(err, ErrNotAdvertisable) {
				t.Fatalf("NewTCPStreamLayer = %v, want ErrNotAdvertisable", err)
			}
		})
	}

	// Binding all interfaces is fine with an advertise address.
	l3, err := NewTCPStreamLayer("0.0.0.0:0", adv, nil)
	if err != nil {
		t.Fatalf("bind 0.0.0.0 with advertise: %v", err)
	}
	l3.Close()
}

func TestTCPStreamLayer_CloseIdempotentEndsAccept(t *testing.T) {
	l := mustStreamLayer(t, nil)
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept did not return after Close")
	}
}

func TestTCPStreamLayer_DialFailsWithinTimeout(t *testing.T) {
	// A port nobody listens on: refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	l := mustStreamLayer(t, nil)
	const timeout = 500 * time.Millisecond
	for _, addr := range []string{
		closedAddr,
		"192.0.2.1:9", // TEST-NET-1: unroutable, so the connect either fails at once or times out
	} {
		start := time.Now()
		c, err := l.Dial(raft.ServerAddress(addr), timeout)
		took := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("Dial %s succeeded", addr)
		}
		if took > timeout+time.Second {
			t.Fatalf("Dial %s failed after %s, want within about %s", addr, took, timeout)
		}
	}
}

func TestRaftTransport_AppendEntries(t *testing.T) {
	logger := testHCLog(t)
	l1, l2 := mustStreamLayer(t, nil), mustStreamLayer(t, nil)
	t1 := NewRaftTransport(l1, 2, 2*time.Second, logger)
	t.Cleanup(func() { _ = t1.Close() })
	t2 := NewRaftTransport(l2, 2, 2*time.Second, logger)
	t.Cleanup(func() { _ = t2.Close() })
	if t1.LocalAddr() != raft.ServerAddress(l1.Addr().String()) {
		t.Fatalf("LocalAddr = %s, want %s", t1.LocalAddr(), l1.Addr())
	}

	args := raft.AppendEntriesRequest{
		RPCHeader:         raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("node-1")},
		Term:              7,
		PrevLogEntry:      99,
		PrevLogTerm:       6,
		Entries:           []*raft.Log{{Index: 100, Term: 7, Type: raft.LogCommand, Data: []byte("entry")}},
		LeaderCommitIndex: 98,
	}
	want := raft.AppendEntriesResponse{Term: 7, LastLog: 100, Success: true}
	gotArgs := make(chan *raft.AppendEntriesRequest, 1)
	go func() {
		select {
		case rpc := <-t2.Consumer():
			req, _ := rpc.Command.(*raft.AppendEntriesRequest)
			gotArgs <- req
			rpc.Respond(&want, nil)
		case <-time.After(5 * time.Second):
			gotArgs <- nil
		}
	}()

	var resp raft.AppendEntriesResponse
	if err := t1.AppendEntries("node-2", t2.LocalAddr(), &args, &resp); err != nil {
		t.Fatalf("AppendEntries: %v", err)
	}
	req := <-gotArgs
	if req == nil {
		t.Fatal("the receiving transport got no AppendEntries RPC")
	}
	if req.Term != 7 || req.PrevLogEntry != 99 || len(req.Entries) != 1 ||
		req.Entries[0].Index != 100 || string(req.Entries[0].Data) != "entry" {
		t.Fatalf("received request %+v, want %+v", req, args)
	}
	if resp.Term != want.Term || resp.LastLog != want.LastLog || !resp.Success {
		t.Fatalf("response %+v, want %+v", resp, want)
	}
}

// countFSM is a raft.FSM that records the data of every applied command.
type countFSM struct {
	mu      sync.Mutex
	applied []string // guarded by mu
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return len(f.applied)
}

func (f *countFSM) has(data string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.applied {
		if d == data {
			return true
		}
	}
	return false
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }

func (f *countFSM) Restore(rc io.ReadCloser) error { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }

func (nopSnapshot) Release() {}

// TestRaftTransport_ThreeNodeCluster runs a real three-node raft over TCP stream layers: it elects a
// leader and replicates a command to every node.
func TestRaftTransport_ThreeNodeCluster(t *testing.T) {
	const n = 3
	logger := testHCLog(t)
	trans := make([]*RaftTransport, n)
	fsms := make([]*countFSM, n)
	var servers []raft.Server
	for i := range n {
		trans[i] = NewRaftTransport(mustStreamLayer(t, nil), 3, 2*time.Second, logger)
		fsms[i] = &countFSM{}
		servers = append(servers, raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("node-%d", i)),
			Address: trans[i].LocalAddr(),
		})
	}
	nodes := make([]*raft.Raft, n)
	for i := range n {
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.HeartbeatTimeout = 200 * time.Millisecond
		cfg.ElectionTimeout = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = 100 * time.Millisecond
		cfg.CommitTimeout = 5 * time.Millisecond
		cfg.Logger = logger.Named(string(servers[i].ID))
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(cfg, fsms[i], store, store, raft.NewInmemSnapshotStore(), trans[i])
		if err != nil {
			t.Fatalf("NewRaft %d: %v", i, err)
		}
		nodes[i] = r
		t.Cleanup(func() { _ = r.Shutdown().Error() })
	}
	if err := nodes[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("BootstrapCluster: %v", err)
	}

	var leader *raft.Raft
	testutil.WaitFor(t, 20*time.Second, "a leader", func() bool {
		for _, r := range nodes {
			if r.State() == raft.Leader {
				leader = r
				return true
			}
		}
		return false
	})
	if err := leader.Apply([]byte("hello"), 5*time.Second).Error(); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "the command on every node", func() bool {
		for _, f := range fsms {
			if !f.has("hello") {
				return false
			}
		}
		return true
	})
}

// testHCLog returns an hclog.Logger writing warnings and errors to t.Log.
func testHCLog(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: testutil.Writer(t)})
}

// mustTestTLSConfig returns a mutual-TLS config with a fresh self-signed certificate for 127.0.0.1,
// trusted as both server and client CA.
func mustTestTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cubekv test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func TestTCPStreamLayer_ConnectionCapAndFirstByteDeadline(t *testing.T) {
	l, err := NewTCPStreamLayer("127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, MaxRaftConns+10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var dialed []net.Conn
	defer func() {
		for _, c := range dialed {
			c.Close()
		}
	}()
	for i := 0; i < MaxRaftConns+5; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		dialed = append(dialed, c)
	}
	testutil.Eventually(t, 5*time.Second, "5 connections over the cap rejected", func() error {
		if n := l.Rejected(); n < 5 {
			return fmt.Errorf("rejected %d", n)
		}
		return nil
	})
	// A silent connection is cut by the first-byte deadline on the
	// accepting side (checked here with a short read on one of them).
	c := <-accepted
	ac := c.(*acceptedConn)
	_ = ac.raw.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read from a silent connection succeeded")
	}
	// Closing accepted connections frees their slots.
	c.Close()
	for i := 0; i < 10; i++ {
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	}
	n, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatalf("no slot freed by closing accepted connections")
	}
}
