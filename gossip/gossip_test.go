package gossip

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/cubekv/cubekv/internal/testutil"
)

// startPool starts len(ids) nodes, each joining the first one, and waits
// until every node sees all of them alive.
func startPool(t *testing.T, ids ...string) []*Gossip {
	t.Helper()
	log := newTestLogger(t)
	var nodes []*Gossip
	for i, id := range ids {
		cfg := testConfig(t, log, id)
		if i > 0 {
			cfg.Join = []string{nodes[0].LocalAddr()}
		}
		nodes = append(nodes, mustStart(t, cfg))
	}
	waitAllAlive(t, nodes)
	return nodes
}

// waitAllAlive waits until every node in nodes sees all of them alive.
func waitAllAlive(t *testing.T, nodes []*Gossip) {
	t.Helper()
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes {
			if msg := seesAlive(g, nodes...); msg != "" {
				return msg
			}
		}
		return ""
	})
}

func TestGossip_ThreeNodePool(t *testing.T) {
	log := newTestLogger(t)
	a := mustStart(t, testConfig(t, log, "n1"))
	cfgB := testConfig(t, log, "n2")
	cfgB.Join = []string{a.LocalAddr()}
	b := mustStart(t, cfgB)
	cfgC := testConfig(t, log, "n3")
	cfgC.Join = []string{b.LocalAddr()} // reaches n1 through n2
	c := mustStart(t, cfgC)

	nodes := []*Gossip{a, b, c}
	waitAllAlive(t, nodes)
	for _, g := range nodes {
		ms := g.Members()
		if len(ms) != 3 || ms[0].ID != "n1" || ms[1].ID != "n2" || ms[2].ID != "n3" {
			t.Fatalf("%s: Members() = %+v, want n1, n2, n3 sorted", g.cfg.Meta.ID, ms)
		}
		if ms[1].Meta != cfgB.Meta {
			t.Errorf("%s: n2 meta = %+v, want %+v", g.cfg.Meta.ID, ms[1].Meta, cfgB.Meta)
		}
		if n := g.NumAlive(); n != 3 {
			t.Errorf("%s: NumAlive() = %d, want 3", g.cfg.Meta.ID, n)
		}
	}
	if _, ok := a.Member("nope"); ok {
		t.Error("Member(nope) reported present")
	}
}

func TestGossip_ShutdownSeenAsDead(t *testing.T) {
	nodes := startPool(t, "n1", "n2", "n3")
	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes[:2] {
			if msg := seesState(g, "n3", StateDead); msg != "" {
				return msg
			}
		}
		return ""
	})
	t.Logf("failure detected by both peers in %v", time.Since(start))
	for _, g := range nodes[:2] {
		if n := g.NumAlive(); n != 2 {
			t.Errorf("%s: NumAlive() = %d, want 2", g.cfg.Meta.ID, n)
		}
		if ms := g.Members(); len(ms) != 3 {
			t.Errorf("%s: Members() has %d entries, want 3 (dead ones listed until reaped)", g.cfg.Meta.ID, len(ms))
		}
	}
}

func TestGossip_LeaveSeenAsLeft(t *testing.T) {
	nodes := startPool(t, "n1", "n2", "n3")
	if err := nodes[2].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes {
			if msg := seesState(g, "n3", StateLeft); msg != "" {
				return msg
			}
		}
		return ""
	})
	if _, err := nodes[2].Join([]string{nodes[0].LocalAddr()}); !errors.Is(err, ErrLeft) {
		t.Errorf("Join after Leave: err = %v, want ErrLeft", err)
	}
}

func TestGossip_JoinBeforePeerStarts(t *testing.T) {
	log := newTestLogger(t)
	port := testutil.FreePort(t)
	peerAddr := fmt.Sprintf("127.0.0.1:%d", port)

	cfgA := testConfig(t, log, "n1")
	cfgA.Join = []string{peerAddr}
	cfgA.StartJoinTimeout = 300 * time.Millisecond
	begin := time.Now()
	a := mustStart(t, cfgA)
	took := time.Since(begin)
	if took < cfgA.StartJoinTimeout || took > 3*time.Second {
		t.Errorf("Start took %v with nobody to join, want about StartJoinTimeout (%v)", took, cfgA.StartJoinTimeout)
	}
	if n := a.NumAlive(); n != 1 {
		t.Fatalf("NumAlive() = %d before the peer runs, want 1", n)
	}

	cfgB := testConfig(t, log, "n2")
	cfgB.BindAddr = peerAddr
	b := mustStart(t, cfgB)
	if b.LocalAddr() != peerAddr {
		t.Fatalf("LocalAddr() = %s, want %s", b.LocalAddr(), peerAddr)
	}
	waitAllAlive(t, []*Gossip{a, b})
}

func TestGossip_JoinErrors(t *testing.T) {
	log := newTestLogger(t)
	g, err := New(testConfig(t, log, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Join before Start: err = %v, want ErrNotStarted", err)
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Leave before Start: err = %v, want ErrNotStarted", err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second Start: err = %v, want ErrAlreadyStarted", err)
	}
	port := testutil.FreePort(t)
	if n, err := g.Join([]string{fmt.Sprintf("127.0.0.1:%d", port)}); n != 0 || !errors.Is(err, ErrJoinFailed) {
		t.Errorf("Join to nobody: n = %d, err = %v, want 0, ErrJoinFailed", n, err)
	}
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := g.Shutdown(); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := g.Start(); !errors.Is(err, ErrShutdown) {
		t.Errorf("Start after Shutdown: err = %v, want ErrShutdown", err)
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown: err = %v, want ErrShutdown", err)
	}
	if _, err := g.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown: err = %v, want ErrShutdown", err)
	}
}

func TestGossip_MockNetwork(t *testing.T) {
	log := newTestLogger(t)
	var network memberlist.MockNetwork
	withMock := func(cfg *Config) *Config {
		cfg.Tune = func(mc *memberlist.Config) {
			fastTune(mc)
			mc.Transport = network.NewTransport(mc.Name)
		}
		return cfg
	}
	a := mustStart(t, withMock(testConfig(t, log, "n1")))
	cfgB := withMock(testConfig(t, log, "n2"))
	cfgB.Join = []string{a.LocalAddr()}
	b := mustStart(t, cfgB)
	waitAllAlive(t, []*Gossip{a, b})
}
