package jepsenlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/cubekv/cubekv/internal/testutil"
)

// scenario is one cluster, one traffic window and one fault schedule.
type scenario struct {
	name  string
	nodes int
	extra []string // extra kvnode flags
	// nodeExtra holds more kvnode flags for some nodes, by id, after extra.
	nodeExtra map[string][]string
	nemeses   func(e *nemesisEnv) []Nemesis
	rounds    int
	before    time.Duration // traffic before the first fault
	fault     time.Duration // how long each fault lasts
	quiet     time.Duration // pause between a heal and the next fault
	after     time.Duration // traffic after the last heal (and recovery)
	workload  workloadConfig
	// verify runs extra assertions after the common checks (e.g. a snapshot was installed).
	verify func(t *testing.T, c *cluster) []string
	// tls runs every port with mutual TLS.
	tls bool
}

// row is one line of the summary table.
type row struct {
	Scenario               string
	Nodes                  int
	Seed                   uint64
	Ops, OK, Fail, Unknown int
	Faults                 int
	FaultKinds             string
	Lin                    string
	LinOps                 int
	LinTook                time.Duration
	Lost, Dups             int64
	Before, During, After  float64 // acknowledged operations per second
	Recover                time.Duration
	Converge               time.Duration
	Wall                   time.Duration
	Problems               []string
	Watch                  watchRow // the watch check (watch_test.go)
}

func defaultWorkload() workloadConfig {
	return workloadConfig{
		registerWorkers: 6, setWorkers: 2, counterWorkers: 3, counterKeys: 2,
		keysPerGen: 4, opsPerGen: 600, opTimeout: 4 * time.Second, resendProb: 0.3,
	}
}

// scenarios returns the scenarios of a profile.
func scenarios(profile string) []scenario {
	long := profile == "long"
	scale := func(n int) int {
		if long {
			return n * 4
		}
		return n
	}
	wl := defaultWorkload()
	if long {
		wl.registerWorkers, wl.setWorkers, wl.counterWorkers = 8, 3, 4
	}
	base := scenario{
		nodes: 3, rounds: 4, before: 3 * time.Second, fault: 3 * time.Second, quiet: 2 * time.Second,
		after: 3 * time.Second, workload: wl,
	}
	mk := func(name string, nodes, rounds int, nem func(e *nemesisEnv) []Nemesis, tweak func(s *scenario)) scenario {
		s := base
		s.name, s.nodes, s.rounds, s.nemeses = name, nodes, scale(rounds), nem
		if tweak != nil {
			tweak(&s)
		}
		return s
	}
	return []scenario{
		mk("kill", 3, 5, killAll, nil),
		// The same kills on the raft-wal log store.
		mk("kill-wal", 3, 5, killAll, func(s *scenario) { s.extra = []string{"--log-store", "wal"} }),
		// The same kills on the durable engine: a killed node reopens its
		// state instead of restoring a snapshot. n1 stays in memory: it
		// replays the whole log after a kill, so its change history reaches
		// back to index 0 for the watch check (a reopened pebble state's
		// history starts at its applied index), and the cluster mixes
		// engines.
		mk("kill-pebble", 3, 5, killAll, func(s *scenario) {
			s.extra = []string{"--engine", "pebble"}
			s.nodeExtra = map[string][]string{"n1": {"--engine", "arena"}}
			s.verify = verifyStateReopened
		}),
		mk("pause", 3, 5, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{&pauseNemesis{env: e, mode: "leader"}, &pauseNemesis{env: e, mode: "follower"}}
		}, nil),
		mk("partition", 3, 5, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{
				&partitionNemesis{env: e, mode: "isolate-leader"}, &partitionNemesis{env: e, mode: "isolate-follower"},
				&partitionNemesis{env: e, mode: "asymmetric"},
			}
		}, nil),
		mk("partition-5", 5, 5, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{
				&partitionNemesis{env: e, mode: "halves"}, &partitionNemesis{env: e, mode: "bridge"},
				&partitionNemesis{env: e, mode: "isolate-leader"}, &partitionNemesis{env: e, mode: "asymmetric"},
			}
		}, nil),
		mk("mixed-5", 5, 5, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{
				&killNemesis{env: e, mode: "leader"}, &pauseNemesis{env: e, mode: "minority"},
				&partitionNemesis{env: e, mode: "halves"}, &killNemesis{env: e, mode: "follower"},
			}
		}, nil),
		mk("membership", 3, 2, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{&memberNemesis{env: e}}
		}, func(s *scenario) { s.fault = 2 * time.Second }),
		mk("transfer", 3, 6, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{&transferNemesis{env: e}}
		}, func(s *scenario) { s.fault, s.quiet = 500*time.Millisecond, 1500*time.Millisecond }),
		mk("tls", 3, 4, func(e *nemesisEnv) []Nemesis {
			return []Nemesis{
				&killNemesis{env: e, mode: "leader"}, &partitionNemesis{env: e, mode: "isolate-leader"},
				&pauseNemesis{env: e, mode: "follower"}, &memberNemesis{env: e},
			}
		}, func(s *scenario) { s.tls = true }),
		mk("snapshot", 3, 2, killFollower, snapshotTweak),
		mk("snapshot-wal", 3, 2, killFollower, func(s *scenario) {
			snapshotTweak(s)
			s.extra = append(s.extra, "--log-store", "wal")
		}),
		// A pebble follower catches up by building a fresh state from the
		// leader's snapshot.
		mk("snapshot-pebble", 3, 2, killFollower, func(s *scenario) {
			snapshotTweak(s)
			s.extra = append(s.extra, "--engine", "pebble")
		}),
	}
}

func killAll(e *nemesisEnv) []Nemesis {
	return []Nemesis{&killNemesis{env: e, mode: "follower"}, &killNemesis{env: e, mode: "leader"}, &killNemesis{env: e, mode: "all"}}
}

func killFollower(e *nemesisEnv) []Nemesis {
	return []Nemesis{&killNemesis{env: e, mode: "follower"}}
}

// snapshotTweak makes the log short, so a follower killed for a while
// catches up by installing a snapshot, and checks that one did.
func snapshotTweak(s *scenario) {
	s.extra = []string{"--snapshot-threshold", "200", "--trailing-logs", "50", "--snapshot-interval", "500ms"}
	s.fault = 6 * time.Second
	s.verify = verifySnapshotInstalled
}

// verifySnapshotInstalled asserts some node caught up by installing a snapshot.
func verifySnapshotInstalled(t *testing.T, c *cluster) []string {
	for _, n := range c.nodes {
		b, err := os.ReadFile(n.logPath)
		if err == nil && strings.Contains(string(b), "Installed remote snapshot") {
			t.Logf("%s caught up by installing a snapshot", n.id)
			return nil
		}
	}
	return []string{"no node installed a snapshot from the leader"}
}

// stateReopened matches the log line of a node that opened a pebble state
// holding entries (a restart, not a first start).
var stateReopened = regexp.MustCompile(`durable state opened.* raft_index=[1-9]`)

// verifyStateReopened asserts some node restarted on its pebble state and
// kept it: a start that opened a state holding entries and did not then
// restore raft's snapshot over it. A node's log holds all its starts; each
// begins with the "durable state opened" line.
func verifyStateReopened(t *testing.T, c *cluster) []string {
	for _, n := range c.nodes {
		b, err := os.ReadFile(n.logPath)
		if err != nil {
			continue
		}
		starts := stateOpened.FindAllIndex(b, -1)
		for i, m := range starts {
			end := len(b)
			if i+1 < len(starts) {
				end = starts[i+1][0]
			}
			start := b[m[0]:end]
			if stateReopened.Match(start) && !bytes.Contains(start, []byte("snapshot restored")) {
				t.Logf("%s restarted on its pebble state and kept it", n.id)
				return nil
			}
		}
	}
	return []string{"no node restarted on a pebble state holding entries without restoring raft's snapshot over it"}
}

// stateOpened matches the line every start of a pebble node logs first.
var stateOpened = regexp.MustCompile(`durable state opened`)

// runScenario runs s and returns its row; problems found are in row.Problems.
func runScenario(t *testing.T, s scenario, bin string, seed uint64, resultsDir string) row {
	t.Helper()
	wall := time.Now()
	r := row{Scenario: s.name, Nodes: s.nodes, Seed: seed}
	t.Logf("scenario %s: seed %d (rerun with -jepsen.seed=%d -run 'TestJepsen/%s')", s.name, seed, seed, s.name)
	dir := t.TempDir()
	nw := newNetwork(t)
	extra := s.extra
	if store := logStore(); store != "" && !slices.Contains(extra, "--log-store") {
		extra = append([]string{"--log-store", store}, extra...)
	}
	if e := engine(); e != "" {
		extra = append([]string{"--engine", e}, extra...)
	}
	extra = append(slices.Clone(watchHistoryFlags), extra...)
	c := startCluster(t, nw, dir, clusterOpts{size: s.nodes, bin: bin, extra: extra, nodeExtra: s.nodeExtra, tls: s.tls})
	rec := newRecorder()
	wcfg := s.workload
	wcfg.tls = c.tls.clientTLS()
	wl := newWorkload(wcfg, rec, "jl/"+s.name, c.endpoints(), seed)
	defer wl.close()
	watchPrefix := "jl/" + s.name + "/"
	ws := startWatchers(t, wl, c.endpoints(), watchPrefix)
	env := &nemesisEnv{c: c, rng: rand.New(rand.NewPCG(seed, 0x6e656d))}
	nemeses := s.nemeses(env)

	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); wl.run(trafficCtx) }()

	wait := func(d time.Duration) { <-time.After(d) } // the fault schedule, not a condition
	wait(s.before)
	firstFault := rec.now()
	kinds := map[string]int{}
	ctx := context.Background()
	// Every kind of fault in turn (shuffled per cycle), so each one is injected at least once
	// when there are as many rounds as kinds.
	var order []int
	var lastHeal int64
	for i := 0; i < s.rounds; i++ {
		if len(order) == 0 {
			order = env.rng.Perm(len(nemeses))
		}
		nem := nemeses[order[0]]
		order = order[1:]
		ictx, cancel := context.WithTimeout(ctx, 60*time.Second)
		err := nem.Inject(ictx)
		cancel()
		if err != nil {
			t.Logf("round %d: inject %s: %v", i, nem.Name(), err)
		} else {
			r.Faults++
			kinds[nem.Name()]++
			t.Logf("round %d: injected %s at %.1fs", i, nem.Name(), time.Duration(rec.now()).Seconds())
		}
		wait(s.fault)
		lastHeal = rec.now()
		hctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		if err := nem.Heal(hctx); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("heal %s: %v", nem.Name(), err))
		}
		cancel()
		if i < s.rounds-1 {
			wait(s.quiet)
		}
	}
	if err := healAll(c); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("heal all: %v", err))
	}
	healed := lastHeal
	// Time to recover after the last heal began: every node ready and a write invoked after the
	// heal acknowledged.
	if err := c.waitAllReady(60 * time.Second); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("recovery: %v", err))
	}
	readyAt := rec.now()
	recovered := waitAckAfter(rec, healed, 60*time.Second)
	r.Recover = time.Duration(max(recovered, readyAt) - healed)
	if recovered < 0 {
		r.Problems = append(r.Problems, "no write acknowledged within 60s of the heal")
		r.Recover = 0
	}
	wait(s.after)
	stopTraffic()
	wg.Wait()
	end := rec.now()

	// Convergence, then the final reads on every node.
	conv, digests, err := c.digestsAgree(60 * time.Second)
	r.Converge = conv
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	} else {
		t.Logf("digests agree after %v: %s at applied %d, %d keys", conv.Round(time.Millisecond), digests[0].Digest[:16], digests[0].AppliedIndex, digests[0].Keys)
	}
	fctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	sets, counters, err := wl.finalReads(fctx, c.nodes)
	cancel()
	if err != nil {
		r.Problems = append(r.Problems, err.Error())
	}

	h := rec.snapshot()
	for _, o := range h {
		r.Ops++
		switch o.Outcome {
		case outcomeOK:
			r.OK++
		case outcomeFail:
			r.Fail++
		default:
			r.Unknown++
		}
	}
	r.Before = throughput(h, 0, firstFault)
	r.During = throughput(h, firstFault, healed)
	r.After = throughput(h, healed, end)
	var fk []string
	for k, n := range kinds {
		fk = append(fk, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(fk)
	r.FaultKinds = strings.Join(fk, ",")

	lin := checkRegister(h, checkerTimeout())
	r.Lin, r.LinOps, r.LinTook = string(lin.Result), lin.Ops, lin.Took
	if lin.Result != porcupine.Ok {
		r.Problems = append(r.Problems, fmt.Sprintf("linearizability: %s (%d ops, %d keys)", lin.Result, lin.Ops, lin.Keys))
	}
	sr := checkSet(h, sets)
	r.Lost += int64(len(sr.Lost))
	if len(sr.Lost) > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("set: %d acknowledged adds missing, e.g. %v", len(sr.Lost), sr.Lost[:min(5, len(sr.Lost))]))
	}
	if len(sr.Phantom) > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("set: %d adds reported failed are present, e.g. %v", len(sr.Phantom), sr.Phantom[:min(5, len(sr.Phantom))]))
	}
	for i := 0; i < s.workload.counterKeys; i++ {
		key := wl.counterKey(i)
		final := map[string]int64{}
		for node, vals := range counters {
			if v, ok := vals[key]; ok {
				final[node] = v
			}
		}
		tally := *wl.tally(key)
		cr := checkCounter(key, tally, final)
		r.Lost += cr.Lost
		r.Dups += cr.Duplicates
		t.Logf("counter %s: acked %d, unknown %d, resend mismatches %d, final %v", key, tally.Acked, tally.Unknown, tally.Mismatch, final)
		if cr.Lost > 0 || cr.Duplicates > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("counter %s: acked %d unknown %d mismatches %d final %v: lost %d duplicates %d",
				key, tally.Acked, tally.Unknown, tally.Mismatch, final, cr.Lost, cr.Duplicates))
		}
	}
	if len(digests) > 0 {
		var last uint64
		for _, d := range digests {
			last = max(last, d.AppliedIndex)
		}
		wctx, cancel := context.WithTimeout(ctx, 120*time.Second)
		var wp []string
		r.Watch, wp = checkWatchers(wctx, ws, wl, c.endpoints(), watchPrefix, int64(last), wcfg.tls, h)
		cancel()
		r.Problems = append(r.Problems, wp...)
		t.Logf("watch: %d watchers, %d events checked, %d gaps, %d duplicates, %d reorders, %d resyncs; reference %d events after %d (%d deletes), %d acknowledged changes in it; %d node histories agree over %d events; canary gaps %d",
			r.Watch.Watchers, r.Watch.Checked, r.Watch.Gaps, r.Watch.Dups, r.Watch.Reorders, r.Watch.Resyncs, r.Watch.Reference, r.Watch.Floor, r.Watch.Deletes, r.Watch.Acked, r.Watch.Histories, r.Watch.PairEvents, r.Watch.CanaryGaps)
	} else {
		ws.stop(0, 0)
	}
	if s.verify != nil {
		r.Problems = append(r.Problems, s.verify(t, c)...)
	}
	r.Wall = time.Since(wall)
	if len(r.Problems) > 0 {
		saveArtifacts(t, resultsDir, s.name, seed, rec, c, lin, r)
	}
	return r
}

// waitAckAfter polls the history until an acknowledged write invoked after
// since appears, returning its completion time, or -1 at the timeout.
func waitAckAfter(rec *recorder, since int64, timeout time.Duration) int64 {
	best := int64(-1)
	_ = testutil.Poll(timeout, func() error {
		for _, o := range rec.snapshot() {
			if o.Call >= since && o.Outcome == outcomeOK && (o.Kind == kindWrite || o.Kind == kindAdd || o.Kind == kindCAS) {
				if best < 0 || o.Return < best {
					best = o.Return
				}
			}
		}
		if best < 0 {
			return errors.New("no acknowledged write yet")
		}
		return nil
	})
	return best
}

// throughput is acknowledged operations per second completed in [from, to).
func throughput(h []op, from, to int64) float64 {
	if to <= from {
		return 0
	}
	n := 0
	for _, o := range h {
		if o.Outcome == outcomeOK && o.Return >= from && o.Return < to {
			n++
		}
	}
	return float64(n) / time.Duration(to-from).Seconds()
}

// checkerTimeout bounds porcupine per scenario.
func checkerTimeout() time.Duration { return 60 * time.Second }

// saveArtifacts writes the history, the porcupine visualization, every
// node's log and the seed under resultsDir/<scenario>.
func saveArtifacts(t *testing.T, resultsDir, name string, seed uint64, rec *recorder, c *cluster, lin linResult, r row) {
	t.Helper()
	dir := filepath.Join(resultsDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return
	}
	if err := rec.writeJSONL(filepath.Join(dir, "history.jsonl")); err != nil {
		t.Logf("artifacts: %v", err)
	}
	info := lin.Info
	if lin.Result == porcupine.Ok || lin.Result == porcupine.Unknown {
		_, info = porcupine.CheckOperationsVerbose(registerModel, registerOperations(rec.snapshot()), checkerTimeout())
	}
	if err := porcupine.VisualizePath(registerModel, info, filepath.Join(dir, "linearizability.html")); err != nil {
		t.Logf("artifacts: visualization: %v", err)
	}
	for _, n := range c.nodes {
		if b, err := os.ReadFile(n.logPath); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.id+".log"), b, 0o644)
		}
	}
	seedText := fmt.Sprintf("seed %d\nrerun: JEPSEN_SEED=%d go test ./tests/jepsen-lite -run 'TestJepsen/%s' -v\nproblems:\n  %s\n",
		seed, seed, name, strings.Join(r.Problems, "\n  "))
	_ = os.WriteFile(filepath.Join(dir, "seed.txt"), []byte(seedText), 0o644)
	t.Logf("artifacts saved in %s", dir)
}

// table renders the summary.
func table(rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s %2s %7s %7s %5s %5s %6s %-10s %5s %4s %8s %8s %8s %8s %8s %s\n",
		"scenario", "n", "ops", "ok", "fail", "unkn", "faults", "lin", "lost", "dup", "tp-pre", "tp-flt", "tp-post", "recover", "converge", "faults injected")
	var tot row
	for _, r := range rows {
		fmt.Fprintf(&b, "%-12s %2d %7d %7d %5d %5d %6d %-10s %5d %4d %8.0f %8.0f %8.0f %8s %8s %s\n",
			r.Scenario, r.Nodes, r.Ops, r.OK, r.Fail, r.Unknown, r.Faults, r.Lin, r.Lost, r.Dups,
			r.Before, r.During, r.After, r.Recover.Round(time.Millisecond), r.Converge.Round(time.Millisecond), r.FaultKinds)
		tot.Ops += r.Ops
		tot.OK += r.OK
		tot.Fail += r.Fail
		tot.Unknown += r.Unknown
		tot.Faults += r.Faults
		tot.Lost += r.Lost
		tot.Dups += r.Dups
	}
	fmt.Fprintf(&b, "%-12s %2s %7d %7d %5d %5d %6d %-10s %5d %4d\n", "TOTAL", "", tot.Ops, tot.OK, tot.Fail, tot.Unknown, tot.Faults, "", tot.Lost, tot.Dups)
	return b.String()
}
