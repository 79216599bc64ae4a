package integration

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cubekv/cubekv/client"
	"github.com/cubekv/cubekv/internal/loadgen"
	"github.com/cubekv/cubekv/internal/testutil"
	"github.com/cubekv/cubekv/thrift/kv"
)

// The large load: keys as kvctl bench load names them (16 zero-padded
// digits), 100-byte values that are a function of the key's number, so
// any key read back can be checked.
const (
	largeKeySize   = 16
	largeValueSize = 100
	largeValueSeed = 0x10_000_000
	largeMemLimit  = "320MiB"
	largeMemBytes  = 320 << 20
	// largeRSSTarget is the RSS the node should stay within: GOMEMLIMIT
	// and 64 MiB for what the Go runtime does not count (pebble's
	// manually managed memory, bbolt's mapped pages, binary and stacks).
	largeRSSTarget = largeMemBytes + 64<<20
	// largeBudget bounds the whole test.
	largeBudget = 60 * time.Minute
	// The load's concurrency, as bench/node_rss.sh runs kvctl bench load.
	largeWorkers = 256
	largeConns   = 16
)

func largeKey(i int) []byte { return loadgen.Key(i, largeKeySize) }

func largeValue(i int) []byte {
	return loadgen.Value(rand.New(rand.NewPCG(largeValueSeed, uint64(i))), largeValueSize)
}

const largeCommand = "go test -count=1 -timeout 90m ./tests/integration -run TestPebble_TenMillionKeysUnderGOMEMLIMIT -integration.profile=long -v"

// TestPebble_TenMillionKeysUnderGOMEMLIMIT loads -integration.large-keys
// keys (default 10,000,000: 16-byte keys, 100-byte values, 1.16 GB) into
// one kvnode with --engine pebble and GOMEMLIMIT=320MiB, checks that it
// serves them (a linearizable read of a random sample, the engine's key
// count, a scan), kills it with kill -9 and restarts it. It logs the load
// time, the node's peak and settled RSS (sampled every second from
// /proc) and what the settled RSS is made of (anonymous memory, file
// pages, raft.db's mapped pages), the data directory's size and the
// restart's time and RSS; the RSS target is GOMEMLIMIT + 64 MiB. The figures are reported, not
// asserted: only a load or a read that fails fails the test.
//
// Long profile only, and without -race (the race detector multiplies the
// node's memory, so its RSS would mean nothing):
//
//	go test -count=1 -timeout 90m ./tests/integration -run TestPebble_TenMillionKeysUnderGOMEMLIMIT -integration.profile=long -v
//
// Add -integration.large-keys=200000 for a quick run.
func TestPebble_TenMillionKeysUnderGOMEMLIMIT(t *testing.T) {
	skipUnlessLong(t, largeCommand)
	if raceBuild {
		// Asked for by name in the long profile, it must not pass by
		// skipping: a race build would measure the race detector's memory.
		t.Fatalf("the long profile's 10M-key test runs without -race (the race detector multiplies memory): %s", largeCommand)
	}
	n := *flagLargeKeys
	if n < 1000 {
		t.Fatalf("-integration.large-keys %d: want at least 1000", n)
	}
	start := time.Now()
	deadline := start.Add(largeBudget)
	if d, ok := t.Deadline(); ok && d.Add(-30*time.Second).Before(deadline) {
		deadline = d.Add(-30 * time.Second)
	}
	// The load must end early enough to leave time for the checks and
	// the restart.
	loadDeadline := deadline.Add(-min(10*time.Minute, time.Until(deadline)/4))

	// The cgroup first: cleanups run last-in first-out, and it can only
	// be removed once proc's cleanup has killed the node.
	cg, cgErr := newMemCgroup(t, largeRSSTarget)
	p := newProc(t, "n1", "--engine", "pebble", "--log-level", "warn")
	p.env = []string{"GOMEMLIMIT=" + largeMemLimit}
	if cgErr != nil {
		t.Logf("memory limit not enforced (%v): the RSS figures below are only reported", cgErr)
	} else {
		p.onLaunch = func(pid int) {
			if err := cg.add(pid); err != nil {
				t.Fatalf("move kvnode %d into cgroup %s: %v", pid, cg.dir, err)
			}
		}
		t.Logf("kvnode runs in memory cgroup %s limited to %.0f MiB (GOMEMLIMIT + 64 MiB) for its anonymous memory and page cache together, as on a board with that much RAM: the kernel reclaims page cache at the limit and kills the node if it cannot", cg.dir, mib(largeRSSTarget))
	}
	p.start()
	rss := startRSSSampler(p.cmd.Process.Pid)
	defer rss.stop()
	gogc := os.Getenv("GOGC")
	if gogc == "" {
		gogc = "kvnode's default"
	}
	t.Logf("kvnode pid %d, --engine pebble, GOMEMLIMIT=%s, GOGC=%s; loading %d keys (%d-byte keys, %d-byte values, %.2f GB) from %d workers on %d clients; load deadline %s",
		p.cmd.Process.Pid, largeMemLimit, gogc, n, largeKeySize, largeValueSize, float64(n)*(largeKeySize+largeValueSize)/1e9,
		largeWorkers, largeConns, loadDeadline.Format(time.TimeOnly))

	// Load.
	loadStart := time.Now()
	res := largeLoad(t, p, n, loadDeadline, rss)
	loadEnd := time.Now()
	loadSecs := loadEnd.Sub(loadStart).Seconds()
	if !p.alive() {
		rss.logTimeline(t)
		exit := <-p.exited
		p.exited <- exit
		t.Fatalf("kvnode exited during the load (%d of %d keys written, %d errors, first: %v): %v%s", res.done, n, res.errors, res.firstErr, exit, cgReport(cg))
	}
	if res.done < int64(n) {
		rss.logTimeline(t)
		t.Fatalf("the load did not finish by its deadline (%s): %d of %d keys written in %.0f s; %d errors, first: %v",
			loadDeadline.Format(time.TimeOnly), res.done, n, loadSecs, res.errors, res.firstErr)
	}
	if res.errors > 0 {
		t.Fatalf("the load had %d errors, first: %v", res.errors, res.firstErr)
	}
	loadPeak, _ := rss.peak()
	t.Logf("load: %d keys in %.1f s, %.0f ops/s, 0 errors; peak RSS during the load %.1f MiB", n, loadSecs, float64(n)/loadSecs, mib(loadPeak))

	// Settle: every key in the engine, then RSS steady for 10 s.
	eventually(t, time.Until(deadline), "the engine holding every key", func() (bool, string) {
		keys := scrape(t, p)["cubekv_engine_keys"]
		return keys == float64(n), fmt.Sprintf("cubekv_engine_keys %.0f, want %d", keys, n)
	})
	settled := testutil.Poll(min(3*time.Minute, time.Until(deadline)), func() error {
		return rss.steady(loadEnd, 10*time.Second, 1<<20)
	})
	settledRSS, hwm := rss.last()
	if settled != nil {
		t.Logf("RSS did not settle (%v); the last sample is reported", settled)
	}
	// The kernel's RSS counters are approximate: a sample can exceed the
	// VmHWM read later, so the peak is the higher of the two.
	peakSample, _ := rss.peak()
	peak := max(hwm, peakSample)
	m := scrape(t, p)
	t.Logf("RSS: peak %.1f MiB (VmHWM %.1f MiB, highest 1 s sample %.1f MiB), settled %.1f MiB %.0f s after the load; GOMEMLIMIT %s, target %.0f MiB: peak %s, settled %s",
		mib(peak), mib(hwm), mib(peakSample), mib(settledRSS), time.Since(loadEnd).Seconds(), largeMemLimit, mib(largeRSSTarget),
		within(peak, largeRSSTarget), within(settledRSS, largeRSSTarget))
	t.Logf("Go runtime when settled: heap in use %.1f MiB, GC goal %.1f MiB, sys %.1f MiB, stacks %.1f MiB, goroutines %.0f; engine keys %.0f, engine bytes %.1f MiB",
		m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_next_gc_bytes"]/(1<<20), m["go_memstats_sys_bytes"]/(1<<20),
		m["go_memstats_stack_inuse_bytes"]/(1<<20), m["go_goroutines"], m["cubekv_engine_keys"], m["cubekv_engine_bytes"]/(1<<20))
	t.Logf("settled %s", rssParts(t, p.cmd.Process.Pid))
	raftDir := filepath.Join(p.dataDir, "raft")
	t.Logf("data dir: state %.1f MiB, raft %.1f MiB (raft.db %.1f MiB, snapshots %.1f MiB)",
		mib(dirBytes(t, filepath.Join(p.dataDir, "state"))), mib(dirBytes(t, raftDir)),
		mib(dirBytes(t, filepath.Join(raftDir, "raft.db"))), mib(dirBytes(t, filepath.Join(raftDir, "snapshots"))))

	// Serve.
	cl := mustClient(t, p.thriftAddr)
	seed := uint64(time.Now().UnixNano())
	checkLargeSample(t, cl, n, 2000, seed)
	checkLargeScan(t, cl, n, seed)
	t.Logf("serving: 2000 linearizable reads of random keys (seed %d) and a 100-key scan returned the loaded values", seed)
	rss.stop()

	// kill -9 and restart.
	p.kill()
	took := restartToServing(t, p)
	eventually(t, time.Until(deadline), "the restarted engine holding every key", func() (bool, string) {
		keys := scrape(t, p)["cubekv_engine_keys"]
		return keys == float64(n), fmt.Sprintf("cubekv_engine_keys %.0f, want %d", keys, n)
	})
	checkLargeSample(t, mustClient(t, p.thriftAddr), n, 200, seed+1)
	rRSS, rHWM, err := procMemory(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restart after kill -9: a linearizable read %.2f s after the start; then RSS %.1f MiB, peak %.1f MiB (VmHWM); 200 random keys read back", took.Seconds(), mib(rRSS), mib(rHWM))
	t.Logf("restarted %s", rssParts(t, p.cmd.Process.Pid))
	if cg != nil {
		t.Logf("memory cgroup:%s", cgReport(cg))
	}
}

// cgReport describes cg's peak charge and kills for a log line ("" without
// a cgroup).
func cgReport(cg *memCgroup) string {
	if cg == nil {
		return ""
	}
	peak, kills, err := cg.peak()
	if err != nil {
		return fmt.Sprintf(" (cgroup figures unreadable: %v)", err)
	}
	return fmt.Sprintf(" peak charge %.1f MiB of its %.0f MiB limit (anonymous memory and page cache), %d kills for memory (-1: not counted by this kernel)", mib(peak), mib(largeRSSTarget), kills)
}

// largeLoadResult is what largeLoad did.
type largeLoadResult struct {
	done     int64 // keys acknowledged
	errors   int64
	firstErr error
}

// largeLoad puts keys 0..n-1 from largeWorkers workers until every key is
// acknowledged, the deadline passes, or 100 puts have failed. It logs
// progress and the node's RSS every 30 s.
func largeLoad(t *testing.T, p *proc, n int, deadline time.Time, rss *rssSampler) largeLoadResult {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	clients := make([]*client.Client, largeConns)
	for i := range clients {
		c, err := client.New(client.Config{Endpoints: []string{p.thriftAddr}, MaxIdlePerEndpoint: largeWorkers / largeConns})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	var next, done, errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := 0; w < largeWorkers; w++ {
		wg.Add(1)
		go func(c *client.Client) {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				pctx, pcancel := context.WithTimeout(ctx, 60*time.Second)
				_, err := c.Put(pctx, largeKey(i), largeValue(i))
				pcancel()
				if err != nil {
					if ctx.Err() != nil {
						return // the deadline, not the node
					}
					firstErr.CompareAndSwap(nil, &err)
					if errs.Add(1) >= 100 {
						cancel()
					}
					continue
				}
				done.Add(1)
			}
		}(clients[w%largeConns])
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	started := time.Now()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			r := largeLoadResult{done: done.Load(), errors: errs.Load()}
			if e := firstErr.Load(); e != nil {
				r.firstErr = *e
			}
			return r
		case <-tick.C:
			cur, hwm := rss.last()
			d := done.Load()
			t.Logf("load: %d keys (%.1f%%) in %.0f s, %.0f ops/s, %d errors; RSS %.1f MiB, VmHWM %.1f MiB",
				d, 100*float64(d)/float64(n), time.Since(started).Seconds(), float64(d)/time.Since(started).Seconds(), errs.Load(), mib(cur), mib(hwm))
		}
	}
}

// checkLargeSample reads count random keys of 0..n-1 (linearizable, the
// client's default) and fails on any value other than the loaded one.
func checkLargeSample(t *testing.T, cl *client.Client, n, count int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0))
	for range count {
		i := rng.IntN(n)
		r, err := cl.Get(ctxTimeout(t, 10*time.Second), largeKey(i))
		if err != nil {
			t.Fatalf("get key %d: %v", i, err)
		}
		if !r.Found || !bytes.Equal(r.Entry.Value, largeValue(i)) {
			t.Fatalf("key %d: found %v, value of %d bytes that is not the loaded one", i, r.Found, len(r.GetEntry().GetValue()))
		}
	}
}

// checkLargeScan scans 100 consecutive keys from a random one and fails
// unless it returns exactly them, in order, with their loaded values.
func checkLargeScan(t *testing.T, cl *client.Client, n int, seed uint64) {
	t.Helper()
	const span = 100
	from := rand.New(rand.NewPCG(seed, 1)).IntN(n - span)
	r, err := cl.Scan(ctxTimeout(t, 10*time.Second), &kv.ScanRequest{StartKey: largeKey(from), EndKey: largeKey(from + span)})
	if err != nil {
		t.Fatalf("scan from key %d: %v", from, err)
	}
	if len(r.Entries) != span {
		t.Fatalf("scan of keys %d to %d: %d entries, want %d", from, from+span, len(r.Entries), span)
	}
	for j, e := range r.Entries {
		if i := from + j; !bytes.Equal(e.Key, largeKey(i)) || !bytes.Equal(e.Value, largeValue(i)) {
			t.Fatalf("scan entry %d: key %q, want %q, or not the loaded value", j, e.Key, largeKey(i))
		}
	}
}

// rssSample is one reading of a process's memory.
type rssSample struct {
	at       time.Time
	rss, hwm int64 // bytes
}

// rssSampler reads a process's VmRSS and VmHWM every second until stopped
// or the process is gone.
type rssSampler struct {
	pid     int
	mu      sync.Mutex
	samples []rssSample
	err     error
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

func startRSSSampler(pid int) *rssSampler {
	s := &rssSampler{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			rss, hwm, err := procMemory(pid)
			s.mu.Lock()
			if err != nil {
				s.err = err
				s.mu.Unlock()
				return
			}
			s.samples = append(s.samples, rssSample{time.Now(), rss, hwm})
			s.mu.Unlock()
			select {
			case <-s.quit:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// last returns the latest sample's RSS and VmHWM.
func (s *rssSampler) last() (rss, hwm int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return 0, 0
	}
	l := s.samples[len(s.samples)-1]
	return l.rss, l.hwm
}

// peak returns the highest RSS sampled and the latest VmHWM.
func (s *rssSampler) peak() (rss, hwm int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.samples {
		rss = max(rss, x.rss)
		hwm = max(hwm, x.hwm)
	}
	return rss, hwm
}

// steady returns nil once the samples taken after since cover at least
// window and the last window's worth vary by at most slack bytes.
func (s *rssSampler) steady(since time.Time, window time.Duration, slack int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if len(s.samples) == 0 || s.samples[len(s.samples)-1].at.Sub(since) < window {
		return fmt.Errorf("fewer than %v of samples", window)
	}
	end := s.samples[len(s.samples)-1].at
	lo, hi := int64(1<<62), int64(0)
	for i := len(s.samples) - 1; i >= 0 && end.Sub(s.samples[i].at) <= window; i-- {
		lo, hi = min(lo, s.samples[i].rss), max(hi, s.samples[i].rss)
	}
	if hi-lo > slack {
		return fmt.Errorf("RSS moved %.1f MiB in the last %v", mib(hi-lo), window)
	}
	return nil
}

// logTimeline logs the samples, one line per 10 s, for a failure report.
func (s *rssSampler) logTimeline(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for i, x := range s.samples {
		if i%10 == 0 || i == len(s.samples)-1 {
			fmt.Fprintf(&b, "\n  %s RSS %.1f MiB VmHWM %.1f MiB", x.at.Format(time.TimeOnly), mib(x.rss), mib(x.hwm))
		}
	}
	t.Logf("RSS timeline of pid %d (sampling ended: %v):%s", s.pid, s.err, b.String())
}

// procStatus reads the memory figures of a process's /proc status (the
// fields in kB), in bytes.
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/status: %q: %w", pid, line, err)
		}
		out[strings.TrimSuffix(f[0], ":")] = v << 10
	}
	if out["VmRSS"] == 0 {
		return nil, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return out, nil
}

// procMemory reads VmRSS and VmHWM of a process.
func procMemory(pid int) (rss, hwm int64, err error) {
	st, err := procStatus(pid)
	if err != nil {
		return 0, 0, err
	}
	return st["VmRSS"], st["VmHWM"], nil
}

// rssParts describes what a process's RSS is made of: anonymous memory
// (the Go heap, stacks, pebble's caches), file pages, and of those the
// pages of the mapped raft.db (bbolt reads the log through mmap; such
// pages are page cache the kernel can drop).
func rssParts(t *testing.T, pid int) string {
	t.Helper()
	st, err := procStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	var bolt int64
	inBolt := false
	for line := range strings.SplitSeq(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			inBolt = len(f) >= 6 && filepath.Base(f[5]) == "raft.db" // a mapping's header line
		case inBolt && len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			bolt += kb << 10
		}
	}
	return fmt.Sprintf("RSS %.1f MiB = anonymous %.1f MiB + file %.1f MiB (of which raft.db mapped %.1f MiB) + shmem %.1f MiB",
		mib(st["VmRSS"]), mib(st["RssAnon"]), mib(st["RssFile"]), mib(bolt), mib(st["RssShmem"]))
}

// dirBytes sums the sizes of the files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("size of %s: %v", dir, err)
	}
	return n
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// within says whether b is within limit.
func within(b, limit int64) string {
	if b <= limit {
		return "within"
	}
	return fmt.Sprintf("over by %.1f MiB", mib(b-limit))
}
