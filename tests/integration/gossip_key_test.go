package integration

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/server"
	"github.com/cubekv/cubekv/thrift/kv"
)

func newGossipKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGossipKeys_RotationUnderLoadAndKeylessNodeIgnored encrypts gossip with
// one key, rotates to another (install, use, remove) while a client writes,
// and checks no node is lost; a node without the key never joins the pool.
func TestGossipKeys_RotationUnderLoadAndKeylessNodeIgnored(t *testing.T) {
	old, next := newGossipKey(t), newGossipKey(t)
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	mustWrite(t, keyFile, []byte(base64.StdEncoding.EncodeToString(old)+"\n"))
	c := startCluster(t, 3, "--gossip-key-file", keyFile)
	leader := c.waitLeader(10 * time.Second)
	cl := mustClient(t, c.procs[0].thriftAddr)
	ctx := ctxTimeout(t, 2*time.Minute)

	// Load while rotating.
	var writes, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := mustClient(t, leader.thriftAddr)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if _, err := w.Put(wctx, []byte(fmt.Sprintf("load-%d", i)), []byte("v")); err != nil {
				failures.Add(1)
			} else {
				writes.Add(1)
			}
			cancel()
		}
	}()

	step := func(op kv.GossipKeyOp, key []byte, want []string) {
		t.Helper()
		resp, err := cl.GossipKeys(ctx, &kv.GossipKeyRequest{Op: op, Key: key})
		if err != nil {
			t.Fatalf("%v: %v", op, err)
		}
		if len(resp.Nodes) != 3 {
			t.Fatalf("%v answered for %d nodes, want 3: %+v", op, len(resp.Nodes), resp.Nodes)
		}
		for _, n := range resp.Nodes {
			if n.Error != nil || fmt.Sprint(n.Fingerprints) != fmt.Sprint(want) {
				t.Fatalf("%v on %s: keys %v, error %q; want %v", op, n.NodeID, n.Fingerprints, n.GetError(), want)
			}
		}
	}
	waitWrites := func(n int64) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("%d writes", n), func() (bool, string) {
			return writes.Load() >= n, fmt.Sprintf("%d writes", writes.Load())
		})
	}
	waitWrites(100)
	fo, fn := server.Fingerprint(old), server.Fingerprint(next)
	step(kv.GossipKeyOp_LIST, nil, []string{fo})
	step(kv.GossipKeyOp_INSTALL, next, []string{fo, fn})
	waitWrites(writes.Load() + 50)
	step(kv.GossipKeyOp_USE, next, []string{fn, fo})
	waitWrites(writes.Load() + 50)
	step(kv.GossipKeyOp_REMOVE, old, []string{fn})
	waitWrites(writes.Load() + 100)

	// Every node still gossips with every other under the new key alone.
	eventually(t, 15*time.Second, "three members alive after the rotation", func() (bool, string) {
		topo, err := cl.Topology(ctx)
		if err != nil {
			return false, err.Error()
		}
		alive := 0
		for _, m := range topo.Members {
			if m.GossipState == kv.GossipState_ALIVE {
				alive++
			}
		}
		return alive == 3, fmt.Sprintf("%d alive", alive)
	})
	close(stop)
	wg.Wait()
	t.Logf("rotation under load: %d writes acknowledged, %d failed", writes.Load(), failures.Load())
	if failures.Load() > 0 || writes.Load() == 0 {
		t.Fatalf("writes during the rotation: %d ok, %d failed", writes.Load(), failures.Load())
	}

	// A node without the key (or with the old one) is not admitted.
	for _, variant := range []struct {
		id  string
		key []byte
	}{{"keyless", nil}, {"oldkey", old}} {
		args := []string{"--bootstrap", "false", "--join", c.procs[0].gossipAddr}
		if variant.key != nil {
			f := filepath.Join(t.TempDir(), "old.key")
			mustWrite(t, f, []byte(base64.StdEncoding.EncodeToString(variant.key)))
			args = append(args, "--gossip-key-file", f)
		}
		intruder := newProc(t, variant.id, args...)
		intruder.launch()
		eventually(t, 15*time.Second, variant.id+" logs a failed join", func() (bool, string) {
			return intruder.logContains("gossip peer unreachable, retrying in the background"), "not logged"
		})
		topo, err := cl.Topology(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range topo.Members {
			if m.NodeID == variant.id {
				t.Fatalf("%s appears in the topology: %+v", variant.id, m)
			}
		}
		if _, err := os.Stat(intruder.logPath); err != nil {
			t.Fatal(err)
		}
	}
}
