package transport

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cubekv/cubekv/internal/pki"
)

// mustCertFiles writes ca.pem and a NAME.pem/NAME-key.pem pair of kind for
// hosts into dir and loads them as Certs.
func mustCertFiles(t *testing.T, dir string, ca pki.Pair, name string, kind pki.Kind, hosts []string) *Certs {
	t.Helper()
	p, err := pki.Issue(ca, kind, name, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string][]byte{"ca.pem": ca.CertPEM, name + ".pem": p.CertPEM, name + "-key.pem": p.KeyPEM} {
		if err := os.WriteFile(filepath.Join(dir, file), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := LoadCerts(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem"), filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// raftDial starts a stream layer with server certs, dials it with client
// certs, and returns the dialler's error and the accepting side's handshake
// error (TLS 1.3 clients finish before the server has checked them).
func raftDial(t *testing.T, server, client *Certs) (dialErr, acceptErr error) {
	t.Helper()
	ln, err := NewTCPStreamLayer("127.0.0.1:0", nil, server.PeerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- err
			return
		}
		defer c.Close()
		// Reading drives the server handshake.
		_, err = c.Read(make([]byte, 1))
		accepted <- err
	}()
	dialer, err := NewTCPStreamLayer("127.0.0.1:0", nil, client.PeerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer dialer.Close()
	c, dialErr := dialer.Dial(raft.ServerAddress(ln.Addr().String()), 3*time.Second)
	if dialErr == nil {
		defer c.Close()
		_, _ = c.Write([]byte{1})
	}
	select {
	case acceptErr = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatalf("the accepting side never finished its handshake")
	}
	return dialErr, acceptErr
}

func TestTLS_ServerCertificateCheckedAgainstTheDialledIP(t *testing.T) {
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	right := mustCertFiles(t, t.TempDir(), ca, "right", pki.KindNode, []string{"127.0.0.1"})
	wrong := mustCertFiles(t, t.TempDir(), ca, "wrong", pki.KindNode, []string{"127.0.0.2"})
	if d, a := raftDial(t, right, right); d != nil || a != nil {
		t.Fatalf("dial a node whose certificate names 127.0.0.1: dial %v, accept %v", d, a)
	}
	if d, _ := raftDial(t, wrong, right); d == nil {
		t.Fatalf("dialled 127.0.0.1 and accepted a certificate for 127.0.0.2")
	}
	// A client certificate from the same CA cannot speak Raft.
	client := mustCertFiles(t, t.TempDir(), ca, "client", pki.KindClient, nil)
	if _, a := raftDial(t, right, client); a == nil {
		t.Fatalf("a client certificate was accepted on the Raft port")
	}
}

func TestTLS_ReloadKeepsCurrentOnBadFiles(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	other, _ := pki.NewCA("other", time.Hour)
	dir := t.TempDir()
	c := mustCertFiles(t, dir, ca, "n", pki.KindNode, []string{"127.0.0.1"})
	before, _ := c.current()
	bad, _ := pki.Issue(other, pki.KindNode, "n", []string{"127.0.0.1"}, time.Hour)
	if err := os.WriteFile(filepath.Join(dir, "n.pem"), bad.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "n-key.pem"), bad.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(); err == nil {
		t.Fatalf("reload accepted a certificate from another CA")
	}
	if after, _ := c.current(); after != before {
		t.Fatalf("a failed reload replaced the certificate")
	}
	good, _ := pki.Issue(ca, pki.KindNode, "n", []string{"127.0.0.1"}, time.Hour)
	_ = os.WriteFile(filepath.Join(dir, "n-key.pem"), good.KeyPEM, 0o600)
	_ = os.WriteFile(filepath.Join(dir, "n.pem"), good.CertPEM, 0o600)
	if changed, err := c.Reload(); err != nil || !changed {
		t.Fatalf("reload of a good pair: %v, %v", changed, err)
	}
}

func TestDial_TLSFailureIsAnErrorNotANilConn(t *testing.T) {
	ca, _ := pki.NewCA("test", time.Hour)
	c := mustCertFiles(t, t.TempDir(), ca, "n", pki.KindNode, []string{"127.0.0.1"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close() // not TLS: the handshake fails
		}
	}()
	conn, err := Dial(context.Background(), ln.Addr().String(), &DialConfig{TLS: c.TLSConfig(), ConnectTimeout: 2 * time.Second})
	if err == nil || conn != nil {
		t.Fatalf("Dial = %v, %v; want an error and no connection", conn, err)
	}
}
