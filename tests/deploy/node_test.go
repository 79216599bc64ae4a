package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/testutil"
)

// nodeKeys is how many keys the single-node scenario writes and reads back.
const nodeKeys = 500

// singleNode is one kvnode process on loopback ports, possibly under an
// emulator (argv is the emulator and the binary, or just the binary).
type singleNode struct {
	argv    []string
	env     []string // extra environment, e.g. KVNODE_* settings
	dataDir string
	logPath string
	thrift  string
	admin   string
	raft    string
	gossip  string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func newSingleNode(t *testing.T, argv ...string) *singleNode {
	t.Helper()
	dir := t.TempDir()
	return &singleNode{
		argv:    argv,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "kvnode.log"),
		thrift:  testutil.FreeAddr(t),
		admin:   testutil.FreeAddr(t),
		raft:    testutil.FreeAddr(t),
		gossip:  testutil.FreeAddr(t),
	}
}

// mustStart starts the process (appending to its log) and waits until
// /ready answers 200.
func (n *singleNode) mustStart(t *testing.T, timeout time.Duration) {
	t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open node log: %v", err)
	}
	args := append(append([]string{}, n.argv[1:]...),
		"--id", "n1",
		"--data-dir", n.dataDir,
		"--thrift-addr", n.thrift,
		"--raft-addr", n.raft,
		"--admin-addr", n.admin,
		"--gossip-addr", n.gossip,
		"--bootstrap", "auto",
	)
	cmd := exec.Command(n.argv[0], args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), n.env...)
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %v: %v", n.argv, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	done := n.done
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	t.Cleanup(func() { n.kill9(t) })
	testutil.Eventually(t, timeout, "kvnode /ready", func() error {
		select {
		case <-done:
			return fmt.Errorf("kvnode exited: %s; log:\n%s", cmd.ProcessState, tail(n.logPath, 3000))
		default:
		}
		_, err := httpGet("http://" + n.admin + "/ready")
		return err
	})
}

// kill9 sends SIGKILL and waits for the process to be gone. Idempotent.
func (n *singleNode) kill9(t *testing.T) {
	t.Helper()
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		t.Errorf("kvnode pid %d did not exit after SIGKILL", n.cmd.Process.Pid)
	}
}

// mustIdleRSS waits until the node has been idle (no request from the test)
// for two seconds and its RSS has settled, then returns it in bytes.
func (n *singleNode) mustIdleRSS(t *testing.T) int64 {
	t.Helper()
	idleSince := time.Now()
	var samples []int64
	var rss int64
	testutil.Eventually(t, 60*time.Second, "idle RSS to settle", func() error {
		v, err := vmRSS(n.cmd.Process.Pid)
		if err != nil {
			return err
		}
		samples = append(samples, v)
		if len(samples) > 5 {
			samples = samples[1:]
		}
		if time.Since(idleSince) < 2*time.Second || len(samples) < 5 {
			return fmt.Errorf("idle for %v, %d samples", time.Since(idleSince).Round(time.Millisecond), len(samples))
		}
		lo, hi := samples[0], samples[0]
		for _, s := range samples {
			lo, hi = min(lo, s), max(hi, s)
		}
		if hi-lo > hi/50 {
			return fmt.Errorf("RSS still moving: %d..%d bytes", lo, hi)
		}
		rss = v
		return nil
	})
	return rss
}

func mustClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints, DisableDiscovery: true, MaxRetries: 20})
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func keyValue(prefix string, i int) (key, value []byte) {
	return []byte(fmt.Sprintf("%s/%04d", prefix, i)), []byte(fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i%97)))
}

// mustPutKeys writes keys [from, to) under prefix with a few concurrent
// writers, each write with its own deadline.
func mustPutKeys(t *testing.T, c *client.Client, prefix string, from, to int) {
	t.Helper()
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := from + w; i < to; i += writers {
				k, v := keyValue(prefix, i)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := c.Put(ctx, k, v)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// mustGetKeys reads keys [from, to) under prefix and checks every value.
func mustGetKeys(t *testing.T, c *client.Client, prefix string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		k, want := keyValue(prefix, i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := c.Get(ctx, k)
		cancel()
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if !resp.Found || resp.Entry == nil || !bytes.Equal(resp.Entry.Value, want) {
			t.Fatalf("get %s: found=%v entry=%v, want value %q", k, resp.Found, resp.Entry, want)
		}
	}
}

// runKillRestartScenario starts a node, measures its idle RSS, writes
// nodeKeys keys, kills it with SIGKILL, restarts it on the same data and
// reads every key back. It returns the idle RSS in bytes.
func runKillRestartScenario(t *testing.T, startTimeout time.Duration, argv ...string) int64 {
	t.Helper()
	n := newSingleNode(t, argv...)
	n.mustStart(t, startTimeout)
	rss := n.mustIdleRSS(t)

	c := mustClient(t, n.thrift)
	mustPutKeys(t, c, "k", 0, nodeKeys)
	n.kill9(t)
	if st, ok := n.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !st.Signaled() || st.Signal() != syscall.SIGKILL {
		t.Fatalf("kvnode did not die of SIGKILL: %v", n.cmd.ProcessState)
	}

	n.mustStart(t, startTimeout)
	mustGetKeys(t, c, "k", 0, nodeKeys)
	return rss
}
