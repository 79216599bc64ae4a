package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ErrTLSConfig is wrapped by errors loading certificates.
var ErrTLSConfig = errors.New("tls configuration")

// Certs is a node's certificate, key and CA, loaded from files and
// reloadable while the node runs. Its TLSConfig does mutual TLS in both
// roles and always uses what was loaded last, so a certificate replaced on
// disk is used for new connections after Reload without a restart;
// established connections keep theirs.
type Certs struct {
	certFile, keyFile, caFile string

	reload sync.Mutex   // serialises Reload (SIGHUP and the ticker)
	mu     sync.RWMutex // guards cert, pool and stamp
	cert   *tls.Certificate
	pool   *x509.CertPool
	stamp  string // sizes and modification times of the files last loaded
}

// LoadCerts reads the node certificate and key and the CA certificate.
func LoadCerts(certFile, keyFile, caFile string) (*Certs, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, fmt.Errorf("%w: mutual TLS needs a certificate, its key and the CA (got cert %q, key %q, ca %q)", ErrTLSConfig, certFile, keyFile, caFile)
	}
	c := &Certs{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Certs) fileStamp() (string, error) {
	s := ""
	for _, f := range []string{c.certFile, c.keyFile, c.caFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrTLSConfig, err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}

// Reload reads the files again when they changed since the last load. On
// any error it keeps what it had. It reports whether it loaded new files.
func (c *Certs) Reload() (bool, error) {
	c.reload.Lock()
	defer c.reload.Unlock()
	stamp, err := c.fileStamp()
	if err != nil {
		return false, err
	}
	c.mu.RLock()
	same := stamp == c.stamp
	c.mu.RUnlock()
	if same {
		return false, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return false, fmt.Errorf("%w: load %s and %s: %v", ErrTLSConfig, c.certFile, c.keyFile, err)
	}
	caPEM, err := os.ReadFile(c.caFile)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return false, fmt.Errorf("%w: %s holds no PEM certificate", ErrTLSConfig, c.caFile)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return false, fmt.Errorf("%w: parse %s: %v", ErrTLSConfig, c.certFile, err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return false, fmt.Errorf("%w: %s is not signed by the CA in %s: %v", ErrTLSConfig, c.certFile, c.caFile, err)
	}
	cert.Leaf = leaf
	c.mu.Lock()
	c.cert, c.pool, c.stamp = &cert, pool, stamp
	c.mu.Unlock()
	return true, nil
}

// Watch reloads the files every interval until ctx ends, logging changes
// and errors.
func (c *Certs) Watch(ctx context.Context, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.ReloadAndLog(logger)
		}
	}
}

// ReloadAndLog is Reload with its outcome logged.
func (c *Certs) ReloadAndLog(logger *slog.Logger) {
	changed, err := c.Reload()
	switch {
	case err != nil:
		logger.Error("certificate reload failed; keeping the current ones", "err", err)
	case changed:
		logger.Info("certificates reloaded")
	}
}

func (c *Certs) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, c.pool
}

// TLSConfig returns a configuration for both roles. As a server it presents
// the current certificate and requires a client certificate signed by the
// current CA. As a client it presents the current certificate and checks the
// server's against the current CA and the dialled host.
func (c *Certs) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.serverConfig(), nil
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := c.current()
			return cert, nil
		},
		// The roots can change at any time, so the client side verifies
		// by hand against the current pool instead of a fixed RootCAs.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: peer presented no certificate", ErrTLSConfig)
			}
			if cs.ServerName == "" {
				// Go leaves it empty for an IP address; dialers in this
				// package fill it in (forHost). Without a host there is
				// nothing to check the certificate against: refuse.
				return fmt.Errorf("%w: no host to verify the server certificate against", ErrTLSConfig)
			}
			_, pool := c.current()
			opts := x509.VerifyOptions{
				Roots:         pool,
				DNSName:       cs.ServerName,
				Intermediates: x509.NewCertPool(),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}
			for _, ic := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(ic)
			}
			if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
				return fmt.Errorf("verify server certificate: %w", err)
			}
			return nil
		},
	}
}

// forHost returns cfg for dialling host. When cfg verifies servers itself
// (VerifyConnection), the returned copy hands it the dialled host as
// ServerName, which crypto/tls leaves empty for IP addresses (they cannot
// travel in SNI), so certificates are checked against IP addresses too.
func forHost(cfg *tls.Config, host string) *tls.Config {
	if cfg == nil || host == "" {
		return cfg
	}
	out := cfg.Clone()
	if out.ServerName == "" {
		out.ServerName = host
	}
	if verify := cfg.VerifyConnection; verify != nil {
		out.VerifyConnection = func(cs tls.ConnectionState) error {
			cs.ServerName = host
			return verify(cs)
		}
	}
	return out
}

// PeerTLSConfig is TLSConfig for node-to-node ports (Raft): as a server it
// also requires the client's certificate to be a node certificate (server
// use), so a client certificate from the same CA cannot speak Raft.
func (c *Certs) PeerTLSConfig() *tls.Config {
	cfg := c.TLSConfig()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		sc := c.serverConfig()
		sc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return fmt.Errorf("%w: peer presented no certificate", ErrTLSConfig)
			}
			for _, u := range cs.PeerCertificates[0].ExtKeyUsage {
				if u == x509.ExtKeyUsageServerAuth {
					return nil
				}
			}
			return fmt.Errorf("%w: peer %q presented a client certificate, not a node certificate", ErrTLSConfig, cs.PeerCertificates[0].Subject.CommonName)
		}
		return sc, nil
	}
	return cfg
}

// serverConfig is the server side of a handshake: it presents the current
// certificate and requires a client certificate signed by the current CA.
func (c *Certs) serverConfig() *tls.Config {
	cert, pool := c.current()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
	}
}

// ClientTLS builds a client-only configuration from files: the CA that
// signed the servers' certificates and, for mutual TLS, a client
// certificate and key (both empty: none presented).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLSConfig, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrTLSConfig, caFile)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: load %s and %s: %v", ErrTLSConfig, certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
