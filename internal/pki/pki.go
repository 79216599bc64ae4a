// Package pki makes the certificates cubekv's mutual TLS needs: one CA,
// node certificates (server and client use, with the node's addresses as
// subject alternative names) and client certificates (client use only).
// Keys are ECDSA P-256; everything is PEM encoded.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Kind says what a certificate is for.
type Kind int

// Certificate kinds.
const (
	// KindNode certificates serve the node's ports and dial its peers.
	KindNode Kind = iota + 1
	// KindClient certificates only dial (kvctl, applications).
	KindClient
)

// ErrBadPEM means PEM input did not hold what was expected.
var ErrBadPEM = errors.New("bad PEM input")

// Pair is a PEM certificate and its PEM private key.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
}

func encode(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, fmt.Errorf("marshal key: %w", err)
	}
	return Pair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

// newTemplate generates a P-256 key (what names it in the error) and a
// certificate template for name with a fresh serial, valid from an hour ago
// (for clock skew) until validFor from now.
func newTemplate(what, name string, validFor time.Duration) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate %s: %w", what, err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	return key, &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"cubekv"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validFor),
	}, nil
}

// NewCA makes a self-signed CA valid for validFor.
func NewCA(name string, validFor time.Duration) (Pair, error) {
	key, tmpl, err := newTemplate("CA key", name, validFor)
	if err != nil {
		return Pair{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	tmpl.MaxPathLenZero = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Pair{}, fmt.Errorf("create CA certificate: %w", err)
	}
	return encode(der, key)
}

// Issue signs a certificate of kind for name with the CA. hosts are IP
// addresses or DNS names the certificate is valid for (node certificates
// need every address peers and clients dial).
func Issue(ca Pair, kind Kind, name string, hosts []string, validFor time.Duration) (Pair, error) {
	caTLS, err := tls.X509KeyPair(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		return Pair{}, fmt.Errorf("load CA: %w", err)
	}
	caCert, err := x509.ParseCertificate(caTLS.Certificate[0])
	if err != nil {
		return Pair{}, fmt.Errorf("parse CA: %w", err)
	}
	key, tmpl, err := newTemplate("key", name, validFor)
	if err != nil {
		return Pair{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	switch kind {
	case KindNode:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case KindClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return Pair{}, fmt.Errorf("unknown certificate kind %d", kind)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caTLS.PrivateKey)
	if err != nil {
		return Pair{}, fmt.Errorf("create certificate: %w", err)
	}
	return encode(der, key)
}

// CertPool parses PEM CA certificates into a pool.
func CertPool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: no CA certificate found", ErrBadPEM)
	}
	return pool, nil
}
