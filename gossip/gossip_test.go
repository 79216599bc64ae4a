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
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes {
			if msg := seesAlive(g, nodes...); msg != "" {
				return msg
			}
		}
		return ""
	})
	return nodes
}

func TestGossip_ThreeNodePool(t *testing.T) {
	log := newTestLogger(t)
	a := mustStart(t, testConfig(t, log, "n1"))
	cfgB := testConfig(t, log, "n2")
	cfgB.Join = []string{a.LocalAddr()}
	cfgB.Meta.NonVoter = true
	b := mustStart(t, cfgB)
	cfgC := testConfig(t, log, "n3")
	cfgC.Join = []string{b.LocalAddr()} // reaches n1 through n2
	c := mustStart(t, cfgC)

	nodes := []*Gossip{a, b, c}
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes {
			if msg := seesAlive(g, nodes...); msg != "" {
				return msg
			}
		}
		return ""
	})
	for _, g := range nodes {
		ms := g.Members()
		if len(ms) != 3 || ms[0].ID != "n1" || ms[1].ID != "n2" || ms[2].ID != "n3" {
			t.Fatalf("%s: Members() = %+v, want n1, n2, n3 sorted", g.cfg.Meta.ID, ms)
		}
		if !ms[1].NonVoter || ms[0].NonVoter {
			t.Errorf("%s: NonVoter flags = %v, %v; want false, true", g.cfg.Meta.ID, ms[0].NonVoter, ms[1].NonVoter)
		}
		if n := g.NumAlive(); n != 3 {
			t.Errorf("%s: NumAlive() = %d, want 3", g.cfg.Meta.ID, n)
		}
	}
	if _, ok := a.Member("nope"); ok {
		t.Error("Member(nope) reported present")
	}
}

func TestGossip_UpdateMetaPropagates(t *testing.T) {
	nodes := startPool(t, "n1", "n2", "n3")
	m := nodes[1].cfg.Meta
	m.ThriftAddr = "127.0.0.1:7777"
	m.Version = "v0.2.0"
	if err := nodes[1].UpdateMeta(m); err != nil {
		t.Fatalf("UpdateMeta: %v", err)
	}
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes {
			got, _ := g.Member("n2")
			if got.Meta != m {
				return fmt.Sprintf("%s sees n2 meta %+v, want %+v", g.cfg.Meta.ID, got.Meta, m)
			}
		}
		return ""
	})

	other := m
	other.ID = "n9"
	if err := nodes[1].UpdateMeta(other); !errors.Is(err, ErrBadConfig) {
		t.Errorf("UpdateMeta with another id: err = %v, want ErrBadConfig", err)
	}
}

func TestGossip_ShutdownSeenAsDead(t *testing.T) {
	nodes := startPool(t, "n1", "n2", "n3")
	start := time.Now()
	if err := nodes[2].Shutdown(); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, 3*time.Second, func() string {
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
	waitFor(t, 3*time.Second, func() string {
		for _, g := range nodes {
			if msg := seesState(g, "n3", StateLeft); msg != "" {
				return msg
			}
		}
		return ""
	})
	if err := nodes[2].UpdateMeta(nodes[2].cfg.Meta); !errors.Is(err, ErrLeft) {
		t.Errorf("UpdateMeta after Leave: err = %v, want ErrLeft", err)
	}
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
	waitFor(t, 5*time.Second, func() string {
		if msg := seesAlive(a, a, b); msg != "" {
			return msg
		}
		return seesAlive(b, a, b)
	})
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
	mustDrainClosed(t, g.Events())
	if err := g.Start(); !errors.Is(err, ErrShutdown) {
		t.Errorf("Start after Shutdown: err = %v, want ErrShutdown", err)
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrShutdown) {
		t.Errorf("Leave after Shutdown: err = %v, want ErrShutdown", err)
	}
	if _, err := g.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Join after Shutdown: err = %v, want ErrShutdown", err)
	}
	if err := g.UpdateMeta(g.cfg.Meta); !errors.Is(err, ErrShutdown) {
		t.Errorf("UpdateMeta after Shutdown: err = %v, want ErrShutdown", err)
	}
}

// mustDrainClosed reads ch until it is closed, failing after a second.
func mustDrainClosed(t *testing.T, ch <-chan Event) {
	t.Helper()
	timeout := time.After(time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("events channel not closed after Shutdown")
		}
	}
}

// nextEvent waits for the next event on g matching want.
func nextEvent(t *testing.T, g *Gossip, typ EventType, id string) Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-g.Events():
			if !ok {
				t.Fatalf("events closed while waiting for %s of %s", typ, id)
			}
			if ev.Type == typ && ev.Member.ID == id {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event for %s", typ, id)
		}
	}
}

func TestGossip_Events(t *testing.T) {
	log := newTestLogger(t)
	a := mustStart(t, testConfig(t, log, "n1"))
	if ev := nextEvent(t, a, EventJoin, "n1"); ev.Member.State != StateAlive || ev.Member.GossipAddr != a.LocalAddr() {
		t.Errorf("self join event = %+v", ev)
	}

	cfgB := testConfig(t, log, "n2")
	cfgB.Join = []string{a.LocalAddr()}
	b := mustStart(t, cfgB)
	if ev := nextEvent(t, a, EventJoin, "n2"); ev.Member.Meta != cfgB.Meta {
		t.Errorf("join event meta = %+v, want %+v", ev.Member.Meta, cfgB.Meta)
	}

	m := cfgB.Meta
	m.Version = "v9"
	if err := b.UpdateMeta(m); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a, EventUpdate, "n2"); ev.Member.Version != "v9" {
		t.Errorf("update event version = %q, want v9", ev.Member.Version)
	}

	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a, EventLeave, "n2"); ev.Member.State != StateLeft {
		t.Errorf("leave event state = %s, want left", ev.Member.State)
	}

	cfgC := testConfig(t, log, "n3")
	cfgC.Join = []string{a.LocalAddr()}
	c := mustStart(t, cfgC)
	nextEvent(t, a, EventJoin, "n3")
	if err := c.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, a, EventFailed, "n3"); ev.Member.State != StateDead {
		t.Errorf("failed event state = %s, want dead", ev.Member.State)
	}
	if d := a.DroppedEvents(); d != 0 {
		t.Errorf("DroppedEvents() = %d with a reading consumer, want 0", d)
	}
}

func TestGossip_SlowConsumerDoesNotBlock(t *testing.T) {
	log := newTestLogger(t)
	cfgA := testConfig(t, log, "n1")
	cfgA.EventBuffer = 2
	a := mustStart(t, cfgA) // nobody reads a.Events()
	var nodes = []*Gossip{a}
	for _, id := range []string{"n2", "n3", "n4"} {
		cfg := testConfig(t, log, id)
		cfg.Join = []string{a.LocalAddr()}
		nodes = append(nodes, mustStart(t, cfg))
	}
	b := nodes[1]
	m := b.cfg.Meta
	for i := 1; i <= 10; i++ {
		m.Version = fmt.Sprintf("v%d", i)
		if err := b.UpdateMeta(m); err != nil {
			t.Fatalf("UpdateMeta %d: %v", i, err)
		}
		waitFor(t, 5*time.Second, func() string { return seesAlive(a, b) })
	}
	waitFor(t, 5*time.Second, func() string {
		for _, g := range nodes {
			if msg := seesAlive(g, nodes...); msg != "" {
				return msg
			}
		}
		return ""
	})
	// 1 self join + 3 joins + 10 updates went into a buffer of 2.
	if d := a.DroppedEvents(); d < 12 {
		t.Errorf("DroppedEvents() = %d, want at least 12", d)
	}
	if n := len(a.Events()); n != 2 {
		t.Fatalf("buffered events = %d, want 2", n)
	}
	<-a.Events()
	last := <-a.Events()
	if last.Type != EventUpdate || last.Member.ID != "n2" || last.Member.Version != "v10" {
		t.Errorf("newest buffered event = %s %s %s, want the last update of n2 (v10)", last.Type, last.Member.ID, last.Member.Version)
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
	waitFor(t, 5*time.Second, func() string {
		if msg := seesAlive(a, a, b); msg != "" {
			return msg
		}
		return seesAlive(b, a, b)
	})
}
