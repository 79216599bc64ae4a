package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/pki"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// certFiles writes a CA, a node certificate for 127.0.0.1 and a client
// certificate into a temp dir.
type certFiles struct {
	dir                      string
	ca                       pki.Pair
	caFile                   string
	nodeCert, nodeKey        string
	clientCert, clientKey    string
	otherNodeCert, otherNode string // a node certificate from another CA
	otherCAFile              string
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustCerts(t *testing.T) *certFiles {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	node, err := pki.Issue(ca, pki.KindNode, "node", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pki.Issue(ca, pki.KindClient, "admin", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewCA("other CA", time.Hour)
	rogue, err := pki.Issue(other, pki.KindNode, "rogue", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &certFiles{dir: dir, ca: ca}
	for _, w := range []struct {
		path *string
		name string
		data []byte
	}{
		{&f.caFile, "ca.pem", ca.CertPEM},
		{&f.nodeCert, "node.pem", node.CertPEM}, {&f.nodeKey, "node-key.pem", node.KeyPEM},
		{&f.clientCert, "admin.pem", cl.CertPEM}, {&f.clientKey, "admin-key.pem", cl.KeyPEM},
		{&f.otherNodeCert, "rogue.pem", rogue.CertPEM}, {&f.otherNode, "rogue-key.pem", rogue.KeyPEM},
		{&f.otherCAFile, "other-ca.pem", other.CertPEM},
	} {
		*w.path = filepath.Join(dir, w.name)
		mustWrite(t, *w.path, w.data)
	}
	return f
}

func (f *certFiles) clientTLS(t *testing.T) *tls.Config {
	t.Helper()
	cfg, err := transport.ClientTLS(f.caFile, f.clientCert, f.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (f *certFiles) nodeFlags(cert, key string) []string {
	return []string{"--tls-cert", cert, "--tls-key", key, "--tls-ca", f.caFile, "--tls-reload-interval", "200ms"}
}

func tlsClient(t *testing.T, cfg *tls.Config, endpoints ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints, Dial: transport.DialConfig{TLS: cfg}, MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTLS_MutualTLSEverywhere runs a three-node cluster with mutual TLS on
// every port and checks who gets in.
func TestTLS_MutualTLSEverywhere(t *testing.T) {
	certs := mustCerts(t)
	c := startClusterWith(t, 3, func(p *proc) {
		p.extra = append(p.extra, certs.nodeFlags(certs.nodeCert, certs.nodeKey)...)
		p.adminTLS = certs.clientTLS(t)
	})
	leader := c.waitLeader(10 * time.Second)
	follower := c.followers(leader)[0]
	ctx := ctxTimeout(t, time.Minute)

	// A client with a certificate from the CA works, through a follower
	// too (forwarding and the follower read index run over TLS).
	good := tlsClient(t, certs.clientTLS(t), follower.thriftAddr)
	if _, err := good.Put(ctx, []byte("secret"), []byte("v")); err != nil {
		t.Fatalf("put with a client certificate: %v", err)
	}
	conn, err := transport.Dial(ctx, follower.thriftAddr, &transport.DialConfig{TLS: certs.clientTLS(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got *kv.GetResponse
	if _, err := conn.Call(ctx, func(ctx context.Context, k *kv.KVClient) error {
		var err error
		got, err = k.Get(ctx, &kv.GetRequest{Key: []byte("secret")})
		return err
	}); err != nil || !got.Found || got.Info.NodeID != follower.id {
		t.Fatalf("linearizable read on follower %s over TLS: %+v, %v", follower.id, got, err)
	}

	// A client without a certificate is refused.
	noCert, err := transport.ClientTLS(certs.caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsClient(t, noCert, leader.thriftAddr).Put(ctx, []byte("x"), []byte("y")); err == nil {
		t.Fatalf("a client without a certificate was served")
	}

	// Plaintext sent to the TLS port fails cleanly: the connection is
	// closed and the node keeps serving.
	plain := mustClient(t, leader.thriftAddr)
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = plain.Put(pctx, []byte("x"), []byte("y"))
	cancel()
	if err == nil {
		t.Fatalf("plaintext client served on the TLS port")
	}
	raw, err := net.DialTimeout("tcp", leader.thriftAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write([]byte("\x00\x00\x00\x10plaintext frame!")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, raw, "plaintext on the TLS port")
	raw.Close()
	if _, err := good.Put(ctx, []byte("still"), []byte("serving")); err != nil {
		t.Fatalf("node stopped serving after plaintext: %v", err)
	}

	// The admin port speaks TLS only, and wants a client certificate.
	noCertHTTP := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: noCert}}
	if resp, err := noCertHTTP.Get("https://" + leader.adminAddr + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("admin port answered without a client certificate")
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + leader.adminAddr + "/health"); err == nil && resp.StatusCode == 200 {
		resp.Body.Close()
		t.Fatalf("admin port answered plaintext HTTP")
	}
	hc, base := leader.admin()
	resp, err := hc.Get(base + "/health")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin /health with a client certificate: %v", err)
	}
	resp.Body.Close()

	// The web console too: refused without a client certificate; with one,
	// it reads every member's /metrics over mutual TLS (all answering).
	if resp, err := noCertHTTP.Get("https://" + leader.adminAddr + "/ui/"); err == nil {
		resp.Body.Close()
		t.Fatalf("console answered without a client certificate")
	}
	eventually(t, 20*time.Second, "the console sees three answering members over TLS", func() (bool, string) {
		resp, err := hc.Get(base + "/ui/api/cluster")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var view struct {
			Members []struct {
				NodeID    string `json:"node_id"`
				Answering bool   `json:"answering"`
				Error     string `json:"error"`
			} `json:"members"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
			return false, err.Error()
		}
		answering := 0
		for _, m := range view.Members {
			if m.Answering {
				answering++
			}
		}
		return len(view.Members) == 3 && answering == 3, fmt.Sprintf("%+v", view.Members)
	})

	// A node holding a certificate from another CA cannot join: added as a
	// member it never catches up (its Raft handshakes fail) and is not
	// promoted, and the cluster keeps committing.
	var join []string
	for _, p := range c.procs {
		join = append(join, p.gossipAddr)
	}
	// The rogue has a consistent PKI of its own: another CA and a node
	// certificate it signed. (A node refuses to start with a certificate
	// its configured CA did not sign.)
	rogue := newProc(t, "rogue", "--tls-cert", certs.otherNodeCert, "--tls-key", certs.otherNode, "--tls-ca", certs.otherCAFile,
		"--bootstrap", "false", "--join", join[0], "--request-timeout", "3s")
	rogue.launch()
	admin := tlsClient(t, certs.clientTLS(t), leader.thriftAddr)
	actx, acancel := context.WithTimeout(ctx, 20*time.Second)
	timeout := int64(3000)
	_, err = admin.AddMember(actx, &kv.AddMemberRequest{NodeID: rogue.id, RaftAddr: rogue.raftAddr, CatchupTimeoutMs: &timeout})
	acancel()
	if err == nil {
		t.Fatalf("a node with another CA's certificate was added and promoted")
	}
	if !rogue.alive() {
		t.Fatalf("rogue node exited; it should run and be refused")
	}
	topo, err := admin.Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range topo.Members {
		if m.NodeID == rogue.id && m.GetSuffrage() == kv.Suffrage_VOTER {
			t.Fatalf("rogue node became a voter")
		}
	}
	if _, err := admin.RemoveMember(ctx, &kv.RemoveMemberRequest{NodeID: rogue.id}); err != nil {
		t.Fatalf("remove rogue: %v", err)
	}
	if _, err := good.Put(ctx, []byte("after-rogue"), []byte("v")); err != nil {
		t.Fatalf("cluster stopped committing: %v", err)
	}
	if rogue.logContains("entering leader state") {
		t.Fatalf("the rogue node became a leader")
	}
}

// TestTLS_CertificateReloadedWithoutRestart replaces a node's certificate on
// disk and sees new connections get the new one, without a restart.
func TestTLS_CertificateReloadedWithoutRestart(t *testing.T) {
	certs := mustCerts(t)
	p := newProc(t, "n1", certs.nodeFlags(certs.nodeCert, certs.nodeKey)...)
	p.adminTLS = certs.clientTLS(t)
	p.start()
	serial := func() string {
		conn, err := tls.Dial("tcp", p.thriftAddr, certs.clientTLS(t))
		if err != nil {
			t.Fatalf("tls dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	next, err := pki.Issue(certs.ca, pki.KindNode, "node-renewed", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Write key then certificate; a reload in between keeps the old pair
	// (the mismatched pair fails to load) and the next one takes both.
	mustWrite(t, certs.nodeKey, next.KeyPEM)
	mustWrite(t, certs.nodeCert, next.CertPEM)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the replaced certificate served", func() (bool, string) {
		return serial() != before, "still the old serial " + before
	})
	if !p.alive() {
		t.Fatalf("node restarted")
	}
	c := tlsClient(t, certs.clientTLS(t), p.thriftAddr)
	if _, err := c.Put(ctxTimeout(t, 10*time.Second), []byte("k"), []byte("v")); err != nil {
		t.Fatalf("put after reload: %v", err)
	}
	// A certificate from another CA written on disk is refused by the
	// reload; the node keeps serving the renewed one.
	renewed := serial()
	mustWrite(t, certs.nodeKey, mustReadFile(t, certs.otherNode))
	mustWrite(t, certs.nodeCert, mustReadFile(t, certs.otherNodeCert))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the reload refuses a certificate from another CA", func() (bool, string) {
		return p.logContains("not signed by the CA"), "not logged"
	})
	if got := serial(); got != renewed {
		t.Fatalf("serving certificate %s after a refused reload, want %s", got, renewed)
	}
	if _, err := c.Put(ctxTimeout(t, 10*time.Second), []byte("k2"), []byte("v")); err != nil {
		t.Fatalf("put after a refused reload: %v", err)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
