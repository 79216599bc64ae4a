package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

type testCluster struct {
	t     *testing.T
	procs []*proc
}

// startCluster starts n nodes formed with --initial-cluster and joined by
// gossip, and waits until every one is ready.
func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	return startClusterWith(t, n, nil, extra...)
}

// startClusterWith is startCluster with a hook that adjusts each node (its
// flags, its admin TLS) before it starts.
func startClusterWith(t *testing.T, n int, prepare func(p *proc), extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	for i := 0; i < n; i++ {
		c.procs = append(c.procs, newProc(t, fmt.Sprintf("n%d", i+1)))
	}
	var initial, join []string
	for _, p := range c.procs {
		initial = append(initial, p.id+"="+p.raftAddr)
		join = append(join, p.gossipAddr)
	}
	for _, p := range c.procs {
		p.extra = append([]string{
			"--initial-cluster", strings.Join(initial, ","),
			"--join", strings.Join(join, ","),
			"--request-timeout", "3s",
		}, extra...)
		if prepare != nil {
			prepare(p)
		}
		p.launch()
	}
	for _, p := range c.procs {
		p.waitReady(60 * time.Second)
	}
	return c
}

func (c *testCluster) byID(id string) *proc {
	for _, p := range c.procs {
		if p.id == id {
			return p
		}
	}
	c.t.Fatalf("no node %s", id)
	return nil
}

// adminStatus reads a node's /status.
func adminStatus(p *proc) (map[string]any, error) {
	hc, base := p.admin()
	resp, err := hc.Get(base + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// waitLeader polls the live nodes until they agree on a leader other than
// skip (if given) and returns it.
func (c *testCluster) waitLeader(timeout time.Duration, skip ...*proc) *proc {
	c.t.Helper()
	var leader *proc
	eventually(c.t, timeout, "a leader", func() (bool, string) {
		for _, p := range c.procs {
			if !p.alive() || contains(skip, p) {
				continue
			}
			if st, err := adminStatus(p); err == nil && st["role"] == "leader" {
				leader = p
				return true, ""
			}
		}
		return false, "none"
	})
	return leader
}

func contains(ps []*proc, p *proc) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func (c *testCluster) followers(leader *proc) []*proc {
	var out []*proc
	for _, p := range c.procs {
		if p != leader && p.alive() {
			out = append(out, p)
		}
	}
	return out
}

// forwarded returns how many writes a node has forwarded to a leader.
func forwarded(t *testing.T, p *proc) float64 {
	t.Helper()
	st, err := adminStatus(p)
	if err != nil {
		t.Fatalf("status of %s: %v", p.id, err)
	}
	return st["forwarded"].(float64)
}

// rawConn dials a node's front door directly (no client retries).
func rawConn(t *testing.T, addr string) *transport.Conn {
	t.Helper()
	conn, err := transport.Dial(context.Background(), addr, &transport.DialConfig{RequestTimeout: 90 * time.Second})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func kvCall[T any](t *testing.T, conn *transport.Conn, timeout time.Duration, fn func(ctx context.Context, c *kv.KVClient) (T, error)) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out T
	_, err := conn.Call(ctx, func(ctx context.Context, c *kv.KVClient) error {
		var err error
		out, err = fn(ctx, c)
		return err
	})
	return out, err
}

func clusterCall[T any](t *testing.T, addr string, timeout time.Duration, fn func(ctx context.Context, c *kv.ClusterClient) (T, error)) (T, error) {
	t.Helper()
	conn := rawConn(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out T
	_, err := conn.Do(ctx, func(ctx context.Context) error {
		var err error
		out, err = fn(ctx, conn.Cluster)
		return err
	})
	return out, err
}

// pause sends SIGSTOP (and registers SIGCONT at cleanup).
func (p *proc) pause() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		p.t.Fatalf("SIGSTOP %s: %v", p.id, err)
	}
	cmd := p.cmd
	p.t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGCONT) })
}

func (p *proc) resume() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		p.t.Fatalf("SIGCONT %s: %v", p.id, err)
	}
}

func (p *proc) logContains(s string) bool {
	b, err := os.ReadFile(p.logPath)
	return err == nil && strings.Contains(string(b), s)
}
