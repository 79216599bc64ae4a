package gossip

import (
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/cubekv/cubekv/internal/testutil"
)

// cutTransport is memberlist's network transport with a switch that cuts
// it off: while cut, packets are dropped and dials fail, as in a network
// partition.
type cutTransport struct {
	*memberlist.NetTransport
	cut *atomic.Bool
}

func (c *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if c.cut.Load() {
		return time.Now(), nil
	}
	return c.NetTransport.WriteTo(b, addr)
}

func (c *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if c.cut.Load() {
		return nil, errors.New("partitioned")
	}
	return c.NetTransport.DialTimeout(addr, timeout)
}

func (c *cutTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	return c.WriteTo(b, addr.Addr)
}

func (c *cutTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return c.DialTimeout(addr.Addr, timeout)
}

var _ memberlist.NodeAwareTransport = (*cutTransport)(nil)

// cuttable makes cfg's memberlist use a cutTransport switched by cut.
func cuttable(t *testing.T, cfg *Config, cut *atomic.Bool) {
	t.Helper()
	// A transport of one's own needs a fixed port to advertise.
	cfg.BindAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t)))
	tune := cfg.Tune
	cfg.Tune = func(mc *memberlist.Config) {
		tune(mc)
		// Short enough that the test passes memberlist's whole dead-node
		// lifetime: after it a dead member is forgotten and never probed.
		mc.GossipToTheDeadTime = 300 * time.Millisecond
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{mc.BindAddr},
			BindPort:  mc.BindPort,
			Logger:    mc.Logger,
		})
		if err != nil {
			t.Errorf("net transport: %v", err)
			return
		}
		mc.Transport = &cutTransport{NetTransport: nt, cut: cut}
	}
}

// A partition longer than memberlist's dead-node timeouts: both sides
// declare the other dead and forget it. Once the network heals, the
// reconnect loop must bring them together again, because each expects the
// other (as kvnode expects every node of its Raft configuration).
func TestGossip_RejoinAfterLongPartition(t *testing.T) {
	log := newTestLogger(t)
	var cut atomic.Bool
	expected := map[string]string{}
	var exp atomic.Pointer[map[string]string]
	exp.Store(&expected)

	cfgA := testConfig(t, log, "n1")
	cuttable(t, cfgA, &cut)
	cfgA.Expected = func() map[string]string { return *exp.Load() }
	a := mustStart(t, cfgA)

	cfgB := testConfig(t, log, "n2")
	cuttable(t, cfgB, &cut)
	cfgB.Expected = func() map[string]string { return *exp.Load() }
	b := mustStart(t, cfgB)
	// Joined by hand, so no seed list can bring them together later.
	if _, err := b.Join([]string{a.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() string { return seesAlive(a, b) + seesAlive(b, a) })
	both := map[string]string{"n1": a.LocalAddr(), "n2": b.LocalAddr()}
	exp.Store(&both)

	cut.Store(true)
	waitFor(t, 10*time.Second, func() string { return seesState(a, "n2", StateDead) + seesState(b, "n1", StateDead) })
	// Past GossipToTheDeadTime both have forgotten the other.
	waitFor(t, 10*time.Second, func() string {
		_, okA := a.Member("n2")
		_, okB := b.Member("n1")
		if okA || okB {
			return "dead members not yet forgotten"
		}
		return ""
	})
	healed := time.Now()
	cut.Store(false)
	waitFor(t, 5*time.Second, func() string { return seesAlive(a, b) + seesAlive(b, a) })
	t.Logf("both alive %v after the heal", time.Since(healed).Round(time.Millisecond))
}

// A node restarted with a seed list naming only itself rejoins the members
// it knew, from its peers file; its own address never counts as a join.
func TestGossip_RestartWithSelfSeedRejoinsFromPeersFile(t *testing.T) {
	log := newTestLogger(t)
	port := testutil.FreePort(t)
	self := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	peers := filepath.Join(t.TempDir(), "gossip", "peers.json")

	cfgA := testConfig(t, log, "n1")
	cfgA.BindAddr = self
	cfgA.Join = []string{self}
	cfgA.PeersFile = peers
	cfgA.StartJoinTimeout = 0
	a, err := New(cfgA)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	cfgB := testConfig(t, log, "n2")
	b := mustStart(t, cfgB)
	if _, err := b.Join([]string{self}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() string { return seesAlive(a, b) + seesAlive(b, a) })
	waitFor(t, 5*time.Second, func() string {
		got, err := readPeersFile(peers)
		if err != nil || len(got) != 1 || got[0].ID != "n2" || got[0].Addr != b.LocalAddr() {
			return "peers file does not name n2 yet"
		}
		return ""
	})
	if err := a.Shutdown(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() string { return seesState(b, "n1", StateDead) })

	cfgA2 := testConfig(t, log, "n1")
	cfgA2.BindAddr = self
	cfgA2.Join = []string{self}
	cfgA2.PeersFile = peers
	cfgA2.StartJoinTimeout = 0
	a2 := mustStart(t, cfgA2)
	waitFor(t, 5*time.Second, func() string { return seesAlive(a2, b) + seesAlive(b, a2) })
}

// Joining only oneself is not a join: Start keeps waiting for a real one.
func TestGossip_SelfSeedIsNotAJoin(t *testing.T) {
	log := newTestLogger(t)
	port := testutil.FreePort(t)
	self := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg := testConfig(t, log, "n1")
	cfg.BindAddr = self
	cfg.Join = []string{self}
	if got := (&Gossip{cfg: cfg.withDefaults()}).seeds(self); len(got) != 0 {
		t.Fatalf("seeds %v, want none: the only seed is this node", got)
	}
	cfg.Join = []string{self, "127.0.0.1:1"}
	if got := (&Gossip{cfg: cfg.withDefaults()}).seeds(self); len(got) != 1 || got[0] != "127.0.0.1:1" {
		t.Fatalf("seeds %v, want [127.0.0.1:1]", got)
	}
}
