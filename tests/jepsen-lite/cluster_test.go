package jepsenlite

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
	"github.com/cubekv/cubekv/transport"
)

// Fixed ports: every node has an address of its own, so they all use the same ones.
const (
	thriftPort = 9090
	raftPort   = 9091
	adminPort  = 9092
	gossipPort = 9093
)

// ErrNodeDown is returned by admin calls to a node whose process is not running.
var ErrNodeDown = errors.New("node down")

// nodeTiming makes failover fast; every scenario uses it.
var nodeTiming = []string{
	"--heartbeat-timeout", "500ms",
	"--election-timeout", "500ms",
	"--leader-lease-timeout", "250ms",
	"--request-timeout", "2s",
}

// kvnode is one node: its namespace, addresses, data directory and, while
// running, its process.
type kvnode struct {
	id      string
	ip      string
	ns      string
	bin     string
	dataDir string
	logPath string
	tls     *tlsSetup // nil: plaintext

	// mu guards everything below.
	mu     sync.Mutex
	args   []string // flags after the fixed identity and address flags
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	starts int
}

func (n *kvnode) thriftAddr() string { return fmt.Sprintf("%s:%d", n.ip, thriftPort) }
func (n *kvnode) raftAddr() string   { return fmt.Sprintf("%s:%d", n.ip, raftPort) }
func (n *kvnode) adminAddr() string  { return fmt.Sprintf("%s:%d", n.ip, adminPort) }
func (n *kvnode) gossipAddr() string { return fmt.Sprintf("%s:%d", n.ip, gossipPort) }

// start launches the process inside the node's namespace. It does not wait for readiness.
func (n *kvnode) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	args := append([]string{"netns", "exec", n.ns, n.bin,
		"--id", n.id,
		"--data-dir", n.dataDir,
		"--thrift-addr", n.thriftAddr(),
		"--raft-addr", n.raftAddr(),
		"--admin-addr", n.adminAddr(),
		"--gossip-addr", n.gossipAddr(),
	}, n.args...)
	fmt.Fprintf(logf, "=== jepsen-lite start %d at %s: ip %s\n", n.starts, time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	n.starts++
	// ip netns exec enters the namespace and execs kvnode: the pid is kvnode's own.
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", n.id, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.paused = cmd, exited, false
	return nil
}

// running reports whether the process is up (possibly paused).
func (n *kvnode) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// isPaused reports whether the process is stopped by SIGSTOP.
func (n *kvnode) isPaused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// kill sends SIGKILL and waits for the process to exit. A node that is not running is left alone.
func (n *kvnode) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd, n.paused = nil, false
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// signal sends SIGSTOP or SIGCONT.
func (n *kvnode) signal(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return fmt.Errorf("%s: %w", n.id, ErrNodeDown)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", n.id, err)
	}
	n.paused = sig == syscall.SIGSTOP
	return nil
}

// wipe removes the data directory; the node must be down.
func (n *kvnode) wipe() error {
	if n.running() {
		return fmt.Errorf("wipe %s: still running", n.id)
	}
	return os.RemoveAll(n.dataDir)
}

// nodeStatus is the part of /status the suite reads.
type nodeStatus struct {
	NodeID        string `json:"node_id"`
	Role          string `json:"role"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LeaderID      string `json:"leader_id"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Keys          int64  `json:"keys"`
}

// nodeDigest is /digest.
type nodeDigest struct {
	NodeID       string `json:"node_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Keys         int64  `json:"keys"`
	Digest       string `json:"digest"`
}

var adminHTTP = &http.Client{Timeout: time.Second}

func (n *kvnode) adminGet(path string, out any) (int, error) {
	if !n.running() || n.isPaused() {
		return 0, fmt.Errorf("%s: %w", n.id, ErrNodeDown)
	}
	hc, scheme := n.tls.adminClient()
	resp, err := hc.Get(scheme + "://" + n.adminAddr() + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

func (n *kvnode) status() (nodeStatus, error) {
	var st nodeStatus
	_, err := n.adminGet("/status", &st)
	return st, err
}

func (n *kvnode) digest() (nodeDigest, error) {
	var d nodeDigest
	_, err := n.adminGet("/digest", &d)
	return d, err
}

func (n *kvnode) ready() bool {
	code, err := n.adminGet("/ready", nil)
	return err == nil && code == http.StatusOK
}

// cluster is the nodes of one scenario.
type cluster struct {
	t     *testing.T
	net   *network
	nodes []*kvnode
	extra []string  // every node's extra flags, fresh nodes included
	tls   *tlsSetup // nil: plaintext
}

// clusterOpts says how to start a cluster.
type clusterOpts struct {
	size  int
	bin   string
	extra []string // extra kvnode flags for every node
	// nodeExtra holds more flags for some nodes, by id, after extra (a
	// flag given twice takes the later value).
	nodeExtra map[string][]string
	tls       bool // mutual TLS on every port
}

// startCluster creates one namespace per node, starts them all formed with
// --initial-cluster and joined by gossip, and waits until each is ready.
func startCluster(t *testing.T, nw *network, dir string, o clusterOpts) *cluster {
	t.Helper()
	c := &cluster{t: t, net: nw}
	for i := 1; i <= o.size; i++ {
		id := fmt.Sprintf("n%d", i)
		ip := nw.addHost(t, id, i)
		nd := filepath.Join(dir, id)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
		c.nodes = append(c.nodes, &kvnode{
			id: id, ip: ip, ns: nw.hosts[id], bin: o.bin,
			dataDir: filepath.Join(nd, "data"),
			logPath: filepath.Join(nd, "kvnode.log"),
		})
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			_ = n.signal(syscall.SIGCONT)
			n.kill()
		}
	})
	c.extra = o.extra
	if o.tls {
		var ips []string
		for _, n := range c.nodes {
			ips = append(ips, n.ip)
		}
		c.tls = newTLSSetup(t, dir, ips)
		c.extra = append(slices.Clone(o.extra), c.tls.nodeFlags...)
		for _, n := range c.nodes {
			n.tls = c.tls
		}
	}
	var initial, join []string
	for _, n := range c.nodes {
		initial = append(initial, n.id+"="+n.raftAddr())
		join = append(join, n.gossipAddr())
	}
	for _, n := range c.nodes {
		n.args = append(append([]string{
			"--initial-cluster", strings.Join(initial, ","),
			"--join", strings.Join(join, ","),
		}, nodeTiming...), c.extra...)
		n.args = append(n.args, o.nodeExtra[n.id]...)
		if err := n.start(); err != nil {
			t.Fatalf("%v", err)
		}
	}
	if err := c.waitAllReady(60 * time.Second); err != nil {
		t.Fatalf("cluster start: %v", err)
	}
	return c
}

// joinArgs are the flags of a fresh node joining the running cluster.
func (c *cluster) joinArgs() []string {
	var join []string
	for _, n := range c.nodes {
		join = append(join, n.gossipAddr())
	}
	return append(append([]string{"--bootstrap", "false", "--join", strings.Join(join, ",")}, nodeTiming...), c.extra...)
}

func (c *cluster) byID(id string) *kvnode {
	for _, n := range c.nodes {
		if n.id == id {
			return n
		}
	}
	return nil
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.thriftAddr())
	}
	return out
}

// waitAllReady polls until every node answers /ready.
func (c *cluster) waitAllReady(timeout time.Duration) error {
	return testutil.Poll(timeout, func() error {
		var notReady []string
		for _, n := range c.nodes {
			if !n.ready() {
				notReady = append(notReady, n.id)
			}
		}
		if len(notReady) > 0 {
			return fmt.Errorf("nodes %v not ready", notReady)
		}
		return nil
	})
}

// leader returns the node that reports itself leader with the highest term, or nil.
func (c *cluster) leader() *kvnode {
	var best *kvnode
	var term uint64
	for _, n := range c.nodes {
		st, err := n.status()
		if err == nil && st.Role == "leader" && st.Term >= term {
			best, term = n, st.Term
		}
	}
	return best
}

// waitLeader polls until some node reports itself leader.
func (c *cluster) waitLeader(ctx context.Context) (*kvnode, error) {
	for {
		if l := c.leader(); l != nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// mustWaitLeader waits up to d for a leader and fails t if none appears.
func (c *cluster) mustWaitLeader(t *testing.T, d time.Duration) *kvnode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	leader, err := c.waitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return leader
}

// followers returns the running nodes other than leader.
func (c *cluster) followers(leader *kvnode) []*kvnode {
	var out []*kvnode
	for _, n := range c.nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// clusterDo makes one Cluster service call at addr on a fresh connection.
func clusterDo(ctx context.Context, addr string, tlsCfg *tls.Config, fn func(ctx context.Context, cc *kv.ClusterClient) error) error {
	conn, err := transport.Dial(ctx, addr, &transport.DialConfig{ConnectTimeout: time.Second, RequestTimeout: 90 * time.Second, TLS: tlsCfg})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Do(ctx, func(ctx context.Context) error { return fn(ctx, conn.Cluster) })
	return err
}

// digestsAgree polls until every node reports the same digest, returning the
// time it took, or an error naming the disagreement at the deadline.
func (c *cluster) digestsAgree(timeout time.Duration) (time.Duration, []nodeDigest, error) {
	start := time.Now()
	var ds []nodeDigest
	err := testutil.Poll(timeout, func() error {
		ds = nil
		var errs []string
		for _, n := range c.nodes {
			d, err := n.digest()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", n.id, err))
				continue
			}
			ds = append(ds, d)
		}
		same := len(errs) == 0 && len(ds) == len(c.nodes)
		for _, d := range ds {
			if d.Digest != ds[0].Digest {
				same = false
			}
		}
		if !same {
			return fmt.Errorf("digests differ: %+v %v", ds, errs)
		}
		return nil
	})
	return time.Since(start), ds, err
}
