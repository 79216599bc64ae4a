package jepsenlite

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"golang.org/x/sys/unix"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/transport"
)

// Short-profile totals the suite must reach.
const (
	minShortOps    = 20000
	minShortFaults = 25
)

// TestJepsen runs every scenario of the profile and checks each one.
func TestJepsen(t *testing.T) {
	requireNetns(t)
	start := time.Now()
	b := mustBinaries(t)
	prof := profile()
	seed := baseSeed(t)
	t.Logf("jepsen-lite: profile %s, seed %d (rerun with -jepsen.seed=%d or JEPSEN_SEED=%d), race=%v, kvnode build %v",
		prof, seed, seed, seed, raceBuild, b.took.Round(time.Millisecond))
	resultsDir := filepath.Join(*flagResults, time.Now().Format("20060102-150405"))
	all := scenarios(prof)
	var rows []row
	ran := 0
	for i, s := range all {
		t.Run(s.name, func(t *testing.T) {
			r := runScenario(t, s, b.normal, seed+uint64(i), resultsDir)
			rows = append(rows, r)
			t.Logf("%s: %d ops (%d ok, %d fail, %d unknown), %d faults, linearizability %s over %d ops in %v, wall %v",
				s.name, r.Ops, r.OK, r.Fail, r.Unknown, r.Faults, r.Lin, r.LinOps, r.LinTook.Round(time.Millisecond), r.Wall.Round(time.Second))
			for _, p := range r.Problems {
				t.Errorf("%s (seed %d): %s", s.name, r.Seed, p)
			}
		})
		if len(rows) > 0 && rows[len(rows)-1].Scenario == s.name {
			ran++
		}
	}
	summary := fmt.Sprintf("jepsen-lite profile %s seed %d race=%v wall %v\n%s",
		prof, seed, raceBuild, time.Since(start).Round(time.Second), table(rows)+watchTable(rows))
	t.Log("\n" + summary)
	if err := os.MkdirAll(resultsDir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(resultsDir, "summary.txt"), []byte(summary), 0o644)
	}
	if err := os.WriteFile(filepath.Join(*flagResults, "summary.txt"), []byte(summary), 0o644); err != nil {
		t.Logf("summary: %v", err)
	}
	if ran == len(all) && prof == "short" {
		var ops, faults int
		for _, r := range rows {
			ops += r.Ops
			faults += r.Faults
		}
		if ops < minShortOps {
			t.Errorf("short profile made %d client operations, want at least %d", ops, minShortOps)
		}
		if faults < minShortFaults {
			t.Errorf("short profile injected %d faults, want at least %d", faults, minShortFaults)
		}
	}
}

// TestCanary_UnsafeLocalReadsCaught runs the register workload against nodes
// that serve LINEARIZABLE reads from local state, with a follower cut off
// while clients keep reading from it: the checker must flag the stale reads.
func TestCanary_UnsafeLocalReadsCaught(t *testing.T) {
	requireNetns(t)
	b := mustBinaries(t)
	seed := baseSeed(t)
	t.Logf("canary seed %d", seed)
	nw := newNetwork(t)
	c := startCluster(t, nw, t.TempDir(), clusterOpts{size: 3, bin: b.canary, extra: []string{"--unsafe-local-reads"}})
	ctx := context.Background()
	leader := c.mustWaitLeader(t, 10*time.Second)
	victim := c.followers(leader)[0]
	var majority []string
	for _, n := range c.nodes {
		if n != victim {
			majority = append(majority, n.thriftAddr())
		}
	}
	rec := newRecorder()
	wl := newWorkload(defaultWorkload(), rec, "canary", c.endpoints(), seed)
	defer wl.close()
	writer := wl.newClient(majority, 0, 5, pinned)
	reader := wl.newClient([]string{victim.thriftAddr()}, 0, -1, pinned)
	keys := []string{"canary/a", "canary/b", "canary/c"}
	var value int64
	step := func(cl *client.Client, kind, key string) op {
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		o := op{Process: rec.process(), Kind: kind, Key: key, Call: rec.now()}
		if kind == kindWrite {
			value++
			o.Value = value
			_, err := cl.Put(octx, []byte(key), encode(value))
			o.Return = rec.now()
			o.Outcome, o.Err = classifyWrite(err), errString(err)
		} else {
			resp, err := cl.Get(octx, []byte(key))
			o.Return = rec.now()
			o.Outcome, o.Err = classifyRead(err), errString(err)
			if err == nil && resp.Found {
				o.Value = decode(resp.Entry.Value)
			}
			if err == nil {
				o.Node = resp.Info.NodeID
			}
		}
		rec.add(o)
		return o
	}
	for _, k := range keys {
		if o := step(writer, kindWrite, k); o.Outcome != outcomeOK {
			t.Fatalf("first write: %s", o.Err)
		}
	}
	if _, _, err := c.digestsAgree(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	r := rules{dropFrom: map[string][]string{}, dropTo: map[string][]string{}}
	cut(r, []*kvnode{victim}, c.followers(victim))
	if err := nw.apply(r); err != nil {
		t.Fatal(err)
	}
	stale := 0
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; stale < 20 && time.Now().Before(deadline); i++ {
		k := keys[i%len(keys)]
		w := step(writer, kindWrite, k)
		rd := step(reader, kindRead, k)
		if w.Outcome == outcomeOK && rd.Outcome == outcomeOK && rd.Value != w.Value {
			stale++
		}
	}
	if err := nw.heal(); err != nil {
		t.Fatal(err)
	}
	t.Logf("canary: %d reads from the cut-off node answered an older value", stale)
	h := rec.snapshot()
	lin := checkRegister(h, checkerTimeout())
	dir := filepath.Join(*flagResults, "canary")
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = rec.writeJSONL(filepath.Join(dir, "history.jsonl"))
		if lin.Result == porcupine.Illegal {
			_ = porcupine.VisualizePath(registerModel, lin.Info, filepath.Join(dir, "linearizability.html"))
		}
	}
	if lin.Result != porcupine.Illegal {
		t.Fatalf("checker canary: unsafe local reads under a partition were not flagged (result %s over %d ops, %d stale reads)", lin.Result, lin.Ops, stale)
	}
	t.Logf("canary caught: porcupine says %s over %d ops", lin.Result, lin.Ops)
}

// TestChecker_FlagsBrokenHistory feeds the checkers hand-made histories.
func TestChecker_FlagsBrokenHistory(t *testing.T) {
	w := func(p int, key string, v int64, call, ret int64, out outcome) op {
		return op{Process: p, Kind: kindWrite, Key: key, Value: v, Call: call, Return: ret, Outcome: out}
	}
	r := func(p int, key string, v int64, call, ret int64) op {
		return op{Process: p, Kind: kindRead, Key: key, Value: v, Call: call, Return: ret, Outcome: outcomeOK}
	}
	cases := []struct {
		name string
		h    []op
		want porcupine.CheckResult
	}{
		{"stale read after acknowledged write", []op{w(0, "k", 1, 0, 10, outcomeOK), r(1, "k", 0, 20, 30)}, porcupine.Illegal},
		{"read sees the write", []op{w(0, "k", 1, 0, 10, outcomeOK), r(1, "k", 1, 20, 30)}, porcupine.Ok},
		{"concurrent read may miss it", []op{w(0, "k", 1, 0, 10, outcomeOK), r(1, "k", 0, 5, 30)}, porcupine.Ok},
		{"unknown write may apply late", []op{w(0, "k", 1, 0, 10, outcomeUnknown), r(1, "k", 0, 20, 30), r(1, "k", 1, 40, 50)}, porcupine.Ok},
		{"failed write must not apply", []op{w(0, "k", 1, 0, 10, outcomeFail), r(1, "k", 1, 20, 30)}, porcupine.Illegal},
		{"value flips back", []op{w(0, "k", 1, 0, 10, outcomeOK), w(0, "k", 2, 11, 20, outcomeOK), r(1, "k", 2, 21, 30), r(1, "k", 1, 31, 40)}, porcupine.Illegal},
		{"keys are independent", []op{w(0, "a", 1, 0, 10, outcomeOK), r(1, "b", 0, 20, 30), r(1, "a", 1, 20, 30)}, porcupine.Ok},
		{"failed cas that saw a wrong current value", []op{
			w(0, "k", 1, 0, 10, outcomeOK),
			{Process: 1, Kind: kindCAS, Key: "k", Expect: 5, Value: 6, Current: 3, Call: 20, Return: 30, Outcome: outcomeOK},
		}, porcupine.Illegal},
		{"cas succeeded on a value that was not there", []op{
			w(0, "k", 1, 0, 10, outcomeOK),
			{Process: 1, Kind: kindCAS, Key: "k", Expect: 2, Value: 3, Success: true, Call: 20, Return: 30, Outcome: outcomeOK},
		}, porcupine.Illegal},
		{"a read after an acknowledged delete sees the value", []op{
			w(0, "k", 1, 0, 10, outcomeOK),
			{Process: 0, Kind: kindDelete, Key: "k", Success: true, Call: 11, Return: 20, Outcome: outcomeOK},
			r(1, "k", 1, 21, 30),
		}, porcupine.Illegal},
		{"a read after an acknowledged delete finds nothing", []op{
			w(0, "k", 1, 0, 10, outcomeOK),
			{Process: 0, Kind: kindDelete, Key: "k", Success: true, Call: 11, Return: 20, Outcome: outcomeOK},
			r(1, "k", 0, 21, 30),
		}, porcupine.Ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkRegister(tc.h, 5*time.Second); got.Result != tc.want {
				t.Fatalf("checker says %s, want %s", got.Result, tc.want)
			}
		})
	}

	t.Run("set loses an acknowledged add", func(t *testing.T) {
		h := []op{
			{Kind: kindAdd, Key: "s1", Outcome: outcomeOK},
			{Kind: kindAdd, Key: "s2", Outcome: outcomeOK},
			{Kind: kindAdd, Key: "s3", Outcome: outcomeUnknown},
		}
		got := checkSet(h, map[string]map[string]bool{"n1": {"s1": true, "s2": true}, "n2": {"s1": true}})
		if len(got.Lost) != 1 || got.Lost[0] != "n2:s2" {
			t.Fatalf("lost = %v, want [n2:s2]", got.Lost)
		}
	})
	t.Run("counter applied twice", func(t *testing.T) {
		got := checkCounter("c", counterTally{Acked: 5, Unknown: 1}, map[string]int64{"n1": 7, "n2": 6})
		if got.Duplicates != 1 || got.Lost != 0 {
			t.Fatalf("duplicates %d lost %d, want 1 and 0", got.Duplicates, got.Lost)
		}
		got = checkCounter("c", counterTally{Acked: 5, Unknown: 1}, map[string]int64{"n1": 4})
		if got.Lost != 1 {
			t.Fatalf("lost %d, want 1", got.Lost)
		}
		got = checkCounter("c", counterTally{Acked: 5, Unknown: 1, Mismatch: 2}, map[string]int64{"n1": 5})
		if got.Duplicates != 2 {
			t.Fatalf("duplicates %d, want 2 (resend mismatches)", got.Duplicates)
		}
	})
	t.Run("classification", func(t *testing.T) {
		unknown := &client.UnknownOutcomeError{Err: fmt.Errorf("%w", client.ErrNotLeader)}
		if got := classifyWrite(unknown); got != outcomeUnknown {
			t.Fatalf("unknown outcome classified %s", got)
		}
		if got := classifyWrite(fmt.Errorf("put: %w", &client.NotLeaderError{})); got != outcomeFail {
			t.Fatalf("not leader classified %s", got)
		}
		if got := classifyWrite(fmt.Errorf("put: %w", transport.ErrConnClosed)); got != outcomeUnknown {
			t.Fatalf("closed connection classified %s", got)
		}
		if got := classifyWrite(fmt.Errorf("put: %w", context.DeadlineExceeded)); got != outcomeUnknown {
			t.Fatalf("deadline classified %s", got)
		}
	})
}

// TestNetwork_PartitionCutsEstablishedFlows checks the partition mechanism
// itself on two bare hosts: a TCP connection established before the cut stops
// carrying bytes, UDP datagrams stop arriving, and both work again after heal.
func TestNetwork_PartitionCutsEstablishedFlows(t *testing.T) {
	requireNetns(t)
	nw := newNetwork(t)
	a := &kvnode{id: "a", ip: nw.addHost(t, "a", 1)}
	z := &kvnode{id: "z", ip: nw.addHost(t, "z", 2)}
	var ln net.Listener
	var pc net.PacketConn
	mustInNetns(t, nw.hosts["z"], func() (err error) {
		if ln, err = net.Listen("tcp", z.ip+":7000"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", z.ip+":7001")
		return err
	})
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(conn, conn); conn.Close() }()
		}
	}()
	var conn net.Conn
	var uc net.Conn
	mustInNetns(t, nw.hosts["a"], func() (err error) {
		if conn, err = net.Dial("tcp", z.ip+":7000"); err != nil {
			return err
		}
		uc, err = net.Dial("udp", z.ip+":7001")
		return err
	})
	defer conn.Close()
	defer uc.Close()
	echo := func() error {
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(conn, buf)
		return err
	}
	datagram := func() error {
		if _, err := uc.Write([]byte("d")); err != nil {
			return err
		}
		_ = pc.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 8)
		_, _, err := pc.ReadFrom(buf)
		return err
	}
	if err := echo(); err != nil {
		t.Fatalf("tcp before the cut: %v", err)
	}
	if err := datagram(); err != nil {
		t.Fatalf("udp before the cut: %v", err)
	}
	r := rules{dropFrom: map[string][]string{}, dropTo: map[string][]string{}}
	cut(r, []*kvnode{a}, []*kvnode{z})
	if err := nw.apply(r); err != nil {
		t.Fatal(err)
	}
	if err := echo(); err == nil {
		t.Fatalf("an established TCP connection still carried bytes across the cut")
	}
	if err := datagram(); err == nil {
		t.Fatalf("a UDP datagram crossed the cut")
	}
	if err := nw.heal(); err != nil {
		t.Fatal(err)
	}
	if err := datagram(); err != nil {
		t.Fatalf("udp after heal: %v", err)
	}
	mustInNetns(t, nw.hosts["a"], func() error {
		c2, err := net.DialTimeout("tcp", z.ip+":7000", 2*time.Second)
		if err == nil {
			c2.Close()
		}
		return err
	})
}

// mustInNetns runs fn on an OS thread moved into namespace ns. Sockets made by
// fn stay in ns. The thread is never returned to the runtime's pool: it exits
// with its goroutine.
func mustInNetns(t *testing.T, ns string, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // no unlock: the thread dies with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("in namespace %s: %v", ns, err)
	}
}
