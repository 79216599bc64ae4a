package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/cubekv/cubekv/internal/testutil"
)

// newTestLogger returns a logger writing to t.Log. Register it before any
// node so its cleanup runs last.
func newTestLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return testutil.Logger(t, slog.LevelDebug)
}

// fastTune shortens memberlist's timings so that loopback failure
// detection takes about a second. The probe timeout and suspicion window
// are kept wide enough that a test binary starved of CPU on a loaded
// machine is not declared dead before it can refute the suspicion: a node
// wrongly marked dead ignores its own later leave, which left tests flaky.
func fastTune(mc *memberlist.Config) {
	mc.ProbeInterval = 200 * time.Millisecond
	mc.ProbeTimeout = 150 * time.Millisecond
	mc.SuspicionMult = 3
	mc.SuspicionMaxTimeoutMult = 2
	mc.GossipInterval = 20 * time.Millisecond
	mc.PushPullInterval = 500 * time.Millisecond
	mc.TCPTimeout = 500 * time.Millisecond
	mc.RetransmitMult = 2
	mc.IndirectChecks = 1
}

// testConfig returns a loopback config with fast timings for node id.
func testConfig(t *testing.T, log *slog.Logger, id string) *Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Meta = Meta{
		ID:         id,
		ThriftAddr: "127.0.0.1:9" + id[len(id)-1:] + "00",
		RaftAddr:   "127.0.0.1:9" + id[len(id)-1:] + "01",
		AdminAddr:  "127.0.0.1:9" + id[len(id)-1:] + "02",
		Version:    "v0.1.0",
	}
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Profile = ProfileLocal
	cfg.Tune = fastTune
	cfg.Logger = log.With("test_node", id)
	cfg.StartJoinTimeout = 5 * time.Second
	cfg.JoinRetryInterval = 50 * time.Millisecond
	cfg.JoinRetryMax = 200 * time.Millisecond
	cfg.BroadcastTimeout = 2 * time.Second
	return cfg
}

// mustStart creates and starts a node from cfg and shuts it down at the
// end of the test.
func mustStart(t *testing.T, cfg *Config) *Gossip {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.Meta.ID, err)
	}
	t.Cleanup(func() {
		if err := g.Shutdown(); err != nil {
			t.Errorf("Shutdown(%s): %v", cfg.Meta.ID, err)
		}
	})
	if err := g.Start(); err != nil {
		t.Fatalf("Start(%s): %v", cfg.Meta.ID, err)
	}
	return g
}

// waitFor polls cond until it returns "" or timeout passes; cond returns
// a description of what is still missing.
func waitFor(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	testutil.Eventually(t, timeout, "gossip to converge", func() error {
		if msg := cond(); msg != "" {
			return errors.New(msg)
		}
		return nil
	})
}

// seesAlive returns "" when g lists every one of want as alive with the
// given metadata and gossip address.
func seesAlive(g *Gossip, want ...*Gossip) string {
	for _, w := range want {
		meta := w.cfg.Meta
		m, ok := g.Member(meta.ID)
		switch {
		case !ok:
			return fmt.Sprintf("%s does not list %s", g.cfg.Meta.ID, meta.ID)
		case m.State != StateAlive:
			return fmt.Sprintf("%s sees %s as %s", g.cfg.Meta.ID, meta.ID, m.State)
		case m.Meta != meta:
			return fmt.Sprintf("%s sees %s with meta %+v, want %+v", g.cfg.Meta.ID, meta.ID, m.Meta, meta)
		case m.GossipAddr != w.LocalAddr():
			return fmt.Sprintf("%s sees %s at %s, want %s", g.cfg.Meta.ID, meta.ID, m.GossipAddr, w.LocalAddr())
		}
	}
	return ""
}

// seesState returns "" when g lists id in state s.
func seesState(g *Gossip, id string, s State) string {
	m, ok := g.Member(id)
	if !ok {
		return fmt.Sprintf("%s does not list %s", g.cfg.Meta.ID, id)
	}
	if m.State != s {
		return fmt.Sprintf("%s sees %s as %s, want %s", g.cfg.Meta.ID, id, m.State, s)
	}
	return ""
}

// testKey returns a key of n bytes filled with b.
func testKey(n int, b byte) []byte {
	return bytes.Repeat([]byte{b}, n)
}
