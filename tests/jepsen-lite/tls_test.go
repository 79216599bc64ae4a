package jepsenlite

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/pki"
	"github.com/cubekv/cubekv/transport"
)

// tlsSetup is a scenario's PKI: one CA, one node certificate valid for every
// node address, and a client certificate for the workload and the checks.
type tlsSetup struct {
	nodeFlags []string    // kvnode flags turning mutual TLS on
	client    *tls.Config // for Thrift clients and the admin port
}

// newTLSSetup writes the certificates into dir for the given node IPs.
func newTLSSetup(t *testing.T, dir string, ips []string) *tlsSetup {
	t.Helper()
	ca, err := pki.NewCA("jepsen-lite CA", 24*time.Hour)
	if err != nil {
		t.Fatalf("CA: %v", err)
	}
	node, err := pki.Issue(ca, pki.KindNode, "node", ips, 24*time.Hour)
	if err != nil {
		t.Fatalf("node certificate: %v", err)
	}
	cl, err := pki.Issue(ca, pki.KindClient, "jepsen-lite", nil, 24*time.Hour)
	if err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	files := map[string][]byte{
		"ca.pem": ca.CertPEM, "node.pem": node.CertPEM, "node-key.pem": node.KeyPEM,
		"client.pem": cl.CertPEM, "client-key.pem": cl.KeyPEM,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	clientTLS, err := transport.ClientTLS(p("ca.pem"), p("client.pem"), p("client-key.pem"))
	if err != nil {
		t.Fatalf("client TLS: %v", err)
	}
	return &tlsSetup{
		nodeFlags: []string{"--tls-cert", p("node.pem"), "--tls-key", p("node-key.pem"), "--tls-ca", p("ca.pem")},
		client:    clientTLS,
	}
}

// adminClient returns the HTTP client and scheme for admin calls.
func (s *tlsSetup) adminClient() (*http.Client, string) {
	if s == nil {
		return adminHTTP, "http"
	}
	return &http.Client{Timeout: adminHTTP.Timeout, Transport: &http.Transport{TLSClientConfig: s.client}}, "https"
}

// clientTLS is the client configuration, nil without TLS.
func (s *tlsSetup) clientTLS() *tls.Config {
	if s == nil {
		return nil
	}
	return s.client
}
