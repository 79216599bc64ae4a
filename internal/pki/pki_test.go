package pki

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

func TestIssue_NodeAndClientCertificatesVerify(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	node, err := Issue(ca, KindNode, "n1", []string{"127.0.0.1", "n1.local"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := Issue(ca, KindClient, "admin", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	parse := func(p Pair) *x509.Certificate {
		c, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	n := parse(node)
	for _, host := range []string{"127.0.0.1", "n1.local"} {
		if _, err := n.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("node cert for %s: %v", host, err)
		}
	}
	if _, err := n.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.9.9.9"}); err == nil {
		t.Errorf("node cert verified for an address it does not name")
	}
	c := parse(client)
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Errorf("client cert verified for server use")
	}
	other, _ := NewCA("other", time.Hour)
	otherPool, _ := CertPool(other.CertPEM)
	if _, err := n.Verify(x509.VerifyOptions{Roots: otherPool, DNSName: "127.0.0.1"}); err == nil {
		t.Errorf("node cert verified against another CA")
	}
	if _, err := CertPool([]byte("junk")); err == nil {
		t.Errorf("junk CA accepted")
	}
}
